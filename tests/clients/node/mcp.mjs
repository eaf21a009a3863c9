// The official TypeScript MCP SDK (@modelcontextprotocol/sdk), as IDE and desktop agents
// build on it, against RAG Engine's MCP server: Streamable HTTP with a bearer header. It
// reports what it saw as JSON on stdout; tests/e2e/gateway/test_mcp.py makes the assertions.
//
//   RAG_MCP_URL=http://127.0.0.1:8080/mcp RAG_API_KEY=rag_... RAG_COLLECTION=handbook \
//   RAG_FORBIDDEN=secrets RAG_QUESTION="How many days of paid leave do I get?" node mcp.mjs

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = new URL(env("RAG_MCP_URL"));
const collection = env("RAG_COLLECTION");
const forbidden = env("RAG_FORBIDDEN");
const question = env("RAG_QUESTION");

async function connected(key) {
  const client = new Client({ name: "rag-engine-tests", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return client;
}

const text = (result) => result.content.map((part) => part.text ?? "").join(" ");

const seen = {};
const client = await connected(env("RAG_API_KEY"));
seen.server = client.getServerVersion();
seen.tools = (await client.listTools()).tools.map((tool) => ({
  name: tool.name,
  readOnly: tool.annotations?.readOnlyHint ?? false,
  required: tool.inputSchema.required ?? [],
  hasOutputSchema: Boolean(tool.outputSchema),
}));
seen.listed = (await client.callTool({ name: "list_collections", arguments: {} })).structuredContent;
const found = await client.callTool({
  name: "search",
  arguments: { collection, query: question, top_k: 3 },
});
seen.search = found.structuredContent;
const progress = [];
const answered = await client.callTool(
  { name: "answer", arguments: { collection, question } },
  undefined,
  { onprogress: (update) => progress.push(update.message ?? "") },
);
seen.answer = { ...answered.structuredContent, progress };
const hit = found.structuredContent.results[0];
seen.document = (
  await client.callTool({
    name: "get_document",
    arguments: { collection, document_id: hit.document_id, chunk_id: hit.chunk_id },
  })
).structuredContent;
const refused = await client.callTool({
  name: "search",
  arguments: { collection: forbidden, query: question },
});
seen.forbidden = { isError: refused.isError ?? false, text: text(refused) };
await client.close();

try {
  await connected("rag_wrong-key");
  seen.wrongKey = { error: false };
} catch (error) {
  seen.wrongKey = { error: true, code: error.code ?? null, message: String(error.message) };
}
console.log(JSON.stringify(seen));
