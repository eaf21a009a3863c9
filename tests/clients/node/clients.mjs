// Real JavaScript clients of the OpenAI-compatible API: the `openai` package and the Vercel AI
// SDK (`ai` with `@ai-sdk/openai-compatible`, and with `@ai-sdk/openai`'s chat model). Each
// runs the same scenarios against RAG_BASE_URL and reports what it saw, as JSON on stdout;
// tests/e2e/gateway/test_chat_clients.py makes the assertions.
//
//   RAG_BASE_URL=http://127.0.0.1:8080/v1 RAG_API_KEY=rag_... RAG_MODEL=docs \
//   RAG_QUESTION="How are API keys stored?" RAG_FOLLOW_UP="And how do I revoke one?" \
//   node clients.mjs

import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText } from "ai";
import OpenAI from "openai";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const baseURL = env("RAG_BASE_URL");
const apiKey = env("RAG_API_KEY");
const model = env("RAG_MODEL");
const question = env("RAG_QUESTION");
const followUp = env("RAG_FOLLOW_UP");
const system = "Answer from the documents.";

function failure(error) {
  // openai: APIError (status, code, type); the AI SDK: APICallError (statusCode, responseBody).
  let body = {};
  try {
    body = JSON.parse(error.responseBody ?? "{}");
  } catch {}
  return {
    error: true,
    status: error.status ?? error.statusCode ?? null,
    code: error.code ?? body.error?.code ?? null,
    type: error.type ?? body.error?.type ?? null,
    message: String(error.message ?? error),
  };
}

async function attempt(run) {
  try {
    return await run();
  } catch (error) {
    return failure(error);
  }
}

function openaiNode() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const ask = async (messages, extra = {}) => {
    const reply = await client.chat.completions.create({ model, messages, ...extra });
    return {
      text: reply.choices[0].message.content,
      finishReason: reply.choices[0].finish_reason,
      completionTokens: reply.usage?.completion_tokens ?? null,
      sources: reply.sources?.length ?? null,
    };
  };
  return {
    models: async () => ({
      listed: (await client.models.list()).data.map((m) => m.id).includes(model),
      retrieved: (await client.models.retrieve(model)).id,
    }),
    plain: () => ask([{ role: "user", content: question }]),
    stream: async () => {
      const stream = await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: question }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = "";
      let finishReason = null;
      let chunks = 0;
      let completionTokens = null;
      for await (const chunk of stream) {
        chunks += 1;
        const choice = chunk.choices[0];
        if (choice?.delta?.content) text += choice.delta.content;
        if (choice?.finish_reason) finishReason = choice.finish_reason;
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
      }
      return { text, finishReason, chunks, completionTokens };
    },
    multiTurn: async (answer) =>
      ask([
        { role: "system", content: system },
        { role: "user", content: question },
        { role: "assistant", content: answer },
        { role: "user", content: followUp },
      ]),
    wrongKey: () =>
      new OpenAI({ baseURL, apiKey: "sk-placeholder", maxRetries: 0 }).chat.completions.create({
        model,
        messages: [{ role: "user", content: question }],
      }),
    wrongModel: () =>
      client.chat.completions.create({
        model: `${model}-missing`,
        messages: [{ role: "user", content: question }],
      }),
    maxTokens: () => ask([{ role: "user", content: question }], { max_tokens: 5 }),
    stop: () => ask([{ role: "user", content: question }], { stop: ["."] }),
  };
}

function aiSdk(languageModel) {
  const base = { model: languageModel, maxRetries: 0 };
  const ask = async (options) => {
    const result = await generateText({ ...base, ...options });
    return {
      text: result.text,
      finishReason: result.finishReason,
      completionTokens: result.usage?.outputTokens ?? null,
    };
  };
  return {
    plain: () => ask({ prompt: question }),
    stream: async () => {
      const result = streamText({ ...base, prompt: question });
      let text = "";
      let chunks = 0;
      for await (const delta of result.textStream) {
        chunks += 1;
        text += delta;
      }
      return {
        text,
        finishReason: await result.finishReason,
        chunks,
        completionTokens: (await result.usage)?.outputTokens ?? null,
      };
    },
    multiTurn: (answer) =>
      ask({
        system,
        messages: [
          { role: "user", content: question },
          { role: "assistant", content: answer },
          { role: "user", content: followUp },
        ],
      }),
    maxTokens: () => ask({ prompt: question, maxOutputTokens: 5 }),
    stop: () => ask({ prompt: question, stopSequences: ["."] }),
  };
}

function aiSdkErrors(makeModel) {
  return {
    wrongKey: () => generateText({ model: makeModel("sk-placeholder", model), prompt: question, maxRetries: 0 }),
    wrongModel: () => generateText({ model: makeModel(apiKey, `${model}-missing`), prompt: question, maxRetries: 0 }),
  };
}

const compatible = (key, name) =>
  createOpenAICompatible({ name: "rag-engine", baseURL, apiKey: key, includeUsage: true })(name);
// @ai-sdk/openai's default model speaks the Responses API; its chat model speaks ours.
const official = (key, name) => createOpenAI({ baseURL, apiKey: key }).chat(name);

const clients = {
  "openai-node": openaiNode(),
  "ai-sdk-openai-compatible": { ...aiSdk(compatible(apiKey, model)), ...aiSdkErrors(compatible) },
  "ai-sdk-openai": { ...aiSdk(official(apiKey, model)), ...aiSdkErrors(official) },
};

const report = {};
for (const [name, scenarios] of Object.entries(clients)) {
  const seen = {};
  for (const [scenario, run] of Object.entries(scenarios)) {
    if (scenario === "multiTurn") continue;
    seen[scenario] = await attempt(run);
  }
  const answer = seen.plain?.text ?? "";
  seen.multiTurn = await attempt(() => scenarios.multiTurn(answer));
  report[name] = seen;
}
process.stdout.write(JSON.stringify(report, null, 2) + "\n");
