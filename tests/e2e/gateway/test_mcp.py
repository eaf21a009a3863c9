"""The MCP server at /mcp, used as agents use it: the official `mcp` client SDK (Streamable
HTTP) through nginx and the gateway, with API keys and JWTs of the same auth as /v1. Every
tool is called; scopes, collection limits, tenants and rate limits hold; hostile arguments are
refused, naming what is wrong; a streamed answer's progress arrives through nginx before its
result."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from rag_client import Client

from tests.e2e.gateway.conftest import Edge, make_jwt
from tests.support.mcp import ACCEPT, initialize

pytestmark = pytest.mark.e2e

TENANT = "mcp-agents"
LEAVE = (
    "Employees get 25 days of paid leave per year. Leave requests go to your manager at least "
    "two weeks ahead."
)
EXPENSES = "Travel expenses are refunded within 30 days when the receipts are attached."
SECRET = "The launch code of project Falcon is 7291."
T = TypeVar("T")
NODE_CLIENTS = Path(__file__).resolve().parents[3] / "tests" / "clients" / "node"


@pytest.fixture(scope="module")
def writer(edge: Edge) -> str:
    """A key of its own tenant that filled two collections: handbook and secrets."""
    key = edge.new_key(TENANT, ["ingest:write", "query:read"])
    with Client(edge.url, key) as sdk:
        for name, docs in {
            "handbook": [
                {"id": "leave", "title": "Leave policy", "text": LEAVE},
                {"id": "expenses", "title": "Expenses", "text": EXPENSES},
            ],
            "secrets": [{"id": "falcon", "title": "Falcon", "text": SECRET}],
        }.items():
            sdk.create_collection(name)
            accepted = sdk.add_documents(name, docs)
            jobs = sdk.wait_jobs(accepted.job_ids, max_seconds=120)
            assert {job.state for job in jobs} == {"succeeded"}, [job.error for job in jobs]
    edge.wait_searchable("handbook", "paid leave", edge.bearer(key), "leave", mode="lexical")
    edge.wait_searchable("secrets", "launch code", edge.bearer(key), "falcon", mode="lexical")
    return key


def agent(edge: Edge, token: str, use: Callable[[ClientSession], Awaitable[T]]) -> T:
    """What ``use`` returns, given an initialised MCP session of the official SDK."""

    async def run() -> T:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{edge.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await use(session)

    return asyncio.run(run())


def call(edge: Edge, token: str, tool: str, **arguments: Any) -> CallToolResult:
    return agent(edge, token, lambda session: session.call_tool(tool, arguments))


def refusal(result: CallToolResult) -> str:
    """The text of a tool's refusal (the call itself succeeded, as MCP reports tool errors)."""
    assert result.is_error, result.structured_content
    return " ".join(getattr(part, "text", "") for part in result.content)


def test_an_agent_lists_searches_answers_and_reads_through_nginx(edge: Edge, writer: str) -> None:
    progress: list[tuple[float, str | None]] = []

    async def session_of_an_agent(session: ClientSession) -> dict[str, Any]:
        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, message))

        tools = await session.list_tools()
        listed = await session.call_tool("list_collections", {})
        found = await session.call_tool(
            "search", {"collection": "handbook", "query": "how many days of paid leave", "top_k": 2}
        )
        answered = await session.call_tool(
            "answer",
            {"collection": "handbook", "question": "How many days of paid leave do I get?"},
            progress_callback=on_progress,
        )
        hit = (found.structured_content or {})["results"][0]
        read = await session.call_tool(
            "get_document",
            {
                "collection": "handbook",
                "document_id": hit["document_id"],
                "chunk_id": hit["chunk_id"],
            },
        )
        whole = await session.call_tool(
            "get_document", {"collection": "handbook", "document_id": "expenses"}
        )
        return {
            "server": session.initialize_result,
            "tools": tools.tools,
            "listed": listed,
            "found": found,
            "answered": answered,
            "read": read,
            "whole": whole,
        }

    seen = agent(edge, writer, session_of_an_agent)
    assert seen["server"].server_info.name == "rag-engine"
    tools = {tool.name: tool for tool in seen["tools"]}
    assert set(tools) == {"list_collections", "search", "answer", "get_document"}
    for tool in tools.values():
        assert tool.annotations is not None, tool.name
        assert tool.annotations.read_only_hint, tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.description, tool.name
    assert tools["search"].input_schema["required"] == ["collection", "query"]

    for name in ("listed", "found", "answered", "read", "whole"):
        result: CallToolResult = seen[name]
        assert not result.is_error, (name, result.content)
        # Clients that read only text get the same result as JSON.
        assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]

    collections = seen["listed"].structured_content["collections"]
    assert sorted(c["name"] for c in collections) == ["handbook", "secrets"]
    assert next(c for c in collections if c["name"] == "handbook")["documents"] == 2

    found = seen["found"].structured_content
    assert found["results"][0]["document_id"] == "leave"
    assert found["results"][0]["title"] == "Leave policy"
    assert LEAVE in found["results"][0]["text"]

    answer = seen["answered"].structured_content
    assert "25 days of paid leave" in answer["answer"]
    assert "[1]" in answer["answer"]
    assert answer["cited"] == [1]
    assert answer["sources"][0]["document_id"] == "leave"
    assert answer["generator"] == "extractive"
    # The answer streamed through nginx: its progress first ("2 passages found"), then its
    # text in pieces that add up to the answer, all before the result.
    assert progress[0][1] == f"{len(answer['sources'])} passages found"
    assert "".join(message or "" for _, message in progress[1:]) == answer["answer"]

    read = seen["read"].structured_content
    assert (read["id"], read["title"]) == ("leave", "Leave policy")
    assert [c["id"] for c in read["chunks"]] == [found["results"][0]["chunk_id"]]
    whole = seen["whole"].structured_content
    assert whole["chunks"][0]["text"] == EXPENSES
    assert whole["truncated"] is False


def test_a_key_limited_to_one_collection_sees_only_that_one(edge: Edge, writer: str) -> None:
    limited = edge.new_key(TENANT, ["ingest:read", "query:read"], collections=["handbook"])
    listed = call(edge, limited, "list_collections").structured_content
    assert [c["name"] for c in listed["collections"]] == ["handbook"]
    found = call(edge, limited, "search", collection="handbook", query="expenses refunded")
    assert found.structured_content["results"][0]["document_id"] == "expenses"

    asks = {
        "search": {"collection": "secrets", "query": "launch code"},
        "answer": {"collection": "secrets", "question": "What is the launch code?"},
        "get_document": {"collection": "secrets", "document_id": "falcon"},
    }
    for tool, arguments in asks.items():
        refused = refusal(call(edge, limited, tool, **arguments))
        # As for a collection that does not exist: nothing tells that it does.
        assert "404 Not found: collection 'secrets' does not exist" in refused, (tool, refused)
        assert "7291" not in refused
    missing = refusal(call(edge, limited, "search", collection="nothing-here", query="x"))
    assert missing.replace("nothing-here", "secrets") == refusal(
        call(edge, limited, "search", **asks["search"])
    ).replace("launch code", "x")


def test_scopes_tenants_and_jwts_hold_as_on_v1(edge: Edge, writer: str) -> None:
    # query:read alone: the collections are listed from the models it may see; no documents.
    reader = edge.new_key(TENANT, ["query:read"])
    listed = call(edge, reader, "list_collections").structured_content["collections"]
    assert sorted(c["name"] for c in listed) == ["handbook", "secrets"]
    assert listed[0]["documents"] is None
    assert "lacks the scope 'ingest:read'" in refusal(
        call(edge, reader, "get_document", collection="handbook", document_id="leave")
    )
    # ingest:read alone: no search, no answer.
    archivist = edge.new_key(TENANT, ["ingest:read"])
    assert "lacks the scope 'query:read'" in refusal(
        call(edge, archivist, "search", collection="handbook", query="leave")
    )
    # Another tenant does not see this one's collections, by any tool.
    stranger = edge.new_key("mcp-strangers", ["ingest:read", "query:read"])
    assert call(edge, stranger, "list_collections").structured_content["collections"] == []
    assert "collection 'handbook' does not exist" in refusal(
        call(edge, stranger, "answer", collection="handbook", question="How many days of leave?")
    )
    # A JWT is a credential here as on /v1, its collections claim included.
    token = make_jwt(TENANT, "query:read", collections=["handbook"])
    hits = call(edge, token, "search", collection="handbook", query="paid leave", top_k=1)
    assert hits.structured_content["results"][0]["document_id"] == "leave"
    assert "does not exist" in refusal(
        call(edge, token, "search", collection="secrets", query="launch code")
    )


def test_a_wrong_or_missing_credential_is_401_and_the_sdk_raises(edge: Edge, writer: str) -> None:
    for token in (None, "rag_not-a-key", "sk-placeholder", make_jwt(TENANT, "x", secret="y" * 48)):
        refused = edge.http.post("/mcp", **initialize(token))
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == 'Bearer realm="rag-engine"'
    with pytest.raises(Exception) as raised:  # noqa: PT011  # the SDK's error, in a group
        call(edge, "rag_not-a-key", "list_collections")
    assert "error" in repr(raised.value).lower()
    admitted = edge.http.post("/mcp", **initialize(writer))
    assert admitted.status_code == 200, admitted.text


def test_each_mcp_request_counts_against_the_callers_rate_limit(edge: Edge, writer: str) -> None:
    key = edge.new_key(TENANT, ["query:read"], requests_per_minute=3)
    # Three per minute's window: within seven requests (two windows at most), one is refused.
    answers = [edge.http.post("/mcp", **initialize(key)) for _ in range(7)]
    statuses = [answer.status_code for answer in answers]
    first_refused = statuses.index(429)
    assert 3 <= first_refused <= 6, statuses
    assert set(statuses[:first_refused]) == {200}, statuses
    assert int(answers[first_refused].headers["retry-after"]) >= 1


def test_hostile_arguments_are_refused_naming_what_is_wrong(edge: Edge, writer: str) -> None:
    for collection in ("..", "../handbook", "handbook/documents", "%2e%2e", "handbook?x=1"):
        refused = refusal(call(edge, writer, "search", collection=collection, query="leave"))
        prefix = "Error executing tool search: "
        assert refused.startswith(prefix), refused
        assert refused[len(prefix) :][:3] in ("400", "404", "422"), refused
    for document_id in ("..", ".", "../../handbook", "leave/../expenses"):
        refused = refusal(
            call(edge, writer, "get_document", collection="handbook", document_id=document_id)
        )
        assert ": 400 Ambiguous path" in refused or ": 404 " in refused, refused
    # Values the API refuses name their field.
    huge = refusal(call(edge, writer, "search", collection="handbook", query="x", top_k=10**6))
    assert huge.endswith("422 Invalid input: top_k: must be 1-100 (MAX_TOP_K)"), huge
    long = refusal(call(edge, writer, "search", collection="handbook", query="leave " * 20_000))
    assert long.endswith("query: longer than 16000 characters (MAX_QUERY_CHARS)"), long
    # Names no collection or document can have: said so (they were a 502 "did not answer in
    # JSON": nginx's internal listener refused the long path in HTML).
    for tool, arguments in (
        ("search", {"collection": "c" * 12_000, "query": "q"}),
        ("answer", {"collection": "c" * 12_000, "question": "q"}),
    ):
        named = refusal(call(edge, writer, tool, **arguments))
        assert "422 Invalid input" in named, named
        assert "3-63 characters" in named, named
    too_long = refusal(
        call(edge, writer, "get_document", collection="handbook", document_id="d" * 70_000)
    )
    assert "414 URI too long" in too_long, too_long
    # A body over MAX_INSPECTED_BODY_BYTES is refused whole.
    request = initialize(writer)
    request["json"]["params"]["padding"] = "x" * (2 * 1024 * 1024)
    assert edge.http.post("/mcp", **request).status_code == 413


def test_a_streamed_answer_arrives_as_events_through_nginx(edge: Edge, writer: str) -> None:
    """Without the SDK: the tool call's answer is a text/event-stream whose progress
    notifications come before the result, each its own event."""
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "answer",
            "arguments": {"collection": "handbook", "question": "How many days of paid leave?"},
            "_meta": {"progressToken": "p1"},
        },
    }
    headers = {"Authorization": f"Bearer {writer}", "Accept": ACCEPT}
    messages = []
    with (
        httpx.Client(base_url=edge.url, timeout=60) as http,
        http.stream("POST", "/mcp", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                messages.append(json.loads(line[5:]))
    progress = [m for m in messages if m.get("method") == "notifications/progress"]
    assert progress
    assert {m["params"]["progressToken"] for m in progress} == {"p1"}
    assert messages[-1]["id"] == 7
    result = messages[-1]["result"]
    assert not result["isError"]
    assert "25 days" in result["structuredContent"]["answer"]


def test_the_typescript_sdk_calls_every_tool_through_nginx(edge: Edge, writer: str) -> None:
    """The official TypeScript SDK, which desktop and IDE agents build on
    (tests/clients/node/mcp.mjs)."""
    node = shutil.which("node")
    assert node, "Node.js is missing: run make setup"
    assert (NODE_CLIENTS / "node_modules" / "@modelcontextprotocol").is_dir(), "run make setup"
    limited = edge.new_key(TENANT, ["ingest:read", "query:read"], collections=["handbook"])
    ran = subprocess.run(
        [node, "mcp.mjs"],
        cwd=NODE_CLIENTS,
        env={
            "PATH": os.environ["PATH"],
            "RAG_MCP_URL": f"{edge.url}/mcp",
            "RAG_API_KEY": limited,
            "RAG_COLLECTION": "handbook",
            "RAG_FORBIDDEN": "secrets",
            "RAG_QUESTION": "How many days of paid leave do I get?",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["server"]["name"] == "rag-engine"
    assert {t["name"] for t in seen["tools"]} == {
        "list_collections",
        "search",
        "answer",
        "get_document",
    }
    assert all(t["readOnly"] and t["hasOutputSchema"] for t in seen["tools"]), seen["tools"]
    assert [c["name"] for c in seen["listed"]["collections"]] == ["handbook"]
    assert seen["search"]["results"][0]["document_id"] == "leave"
    answer = seen["answer"]
    assert "25 days of paid leave" in answer["answer"]
    assert answer["sources"][answer["cited"][0] - 1]["document_id"] == "leave"
    assert "".join(answer["progress"][1:]) == answer["answer"]
    assert seen["document"]["chunks"][0]["id"] == seen["search"]["results"][0]["chunk_id"]
    assert seen["forbidden"]["isError"] is True
    assert "collection 'secrets' does not exist" in seen["forbidden"]["text"]
    assert seen["wrongKey"]["error"] is True
    assert "401" in seen["wrongKey"]["message"], seen["wrongKey"]


def test_a_document_is_a_resource_and_asking_is_a_prompt(edge: Edge, writer: str) -> None:
    async def browse(session: ClientSession) -> dict[str, Any]:
        templates = await session.list_resource_templates()
        read = await session.read_resource("rag://handbook/documents/leave")
        prompts = await session.list_prompts()
        prompt = await session.get_prompt(
            "ask", {"collection": "handbook", "question": "How many days of leave?"}
        )
        return {"templates": templates, "read": read, "prompts": prompts, "prompt": prompt}

    seen = agent(edge, writer, browse)
    [template] = seen["templates"].resource_templates
    assert template.uri_template == "rag://{collection}/documents/{document_id}"
    [content] = seen["read"].contents
    assert content.mime_type == "text/markdown"
    assert content.text.startswith("# Leave policy\n")
    assert LEAVE in content.text
    assert [p.name for p in seen["prompts"].prompts] == ["ask"]
    [message] = seen["prompt"].messages
    assert "'handbook'" in message.content.text
    assert "How many days of leave?" in message.content.text

    limited = edge.new_key(TENANT, ["ingest:read", "query:read"], collections=["handbook"])
    for uri in ("rag://secrets/documents/falcon", "rag://nothing-here/documents/falcon"):
        with pytest.raises(Exception) as refused:  # noqa: PT011  # the SDK's MCPError, grouped
            agent(edge, limited, lambda session, uri=uri: session.read_resource(uri))
        assert "does not exist" in repr(refused.value), refused.value
        assert "7291" not in repr(refused.value)
