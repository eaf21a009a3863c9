"""The MCP server's tools: list the collections, search one, answer from one with citations,
read a document or a chunk and its neighbours; a document as a resource
(``rag://{collection}/documents/{document_id}``, Markdown); a prompt to answer from a
collection. Each is a call of the public API as the agent's own credential
(rag_gateway.mcp.calls); they only read. Tool results are structured (each tool declares its
output schema) and also sent as JSON text for clients that read only text."""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field
from rag_core.service import package_version

from rag_gateway.mcp.calls import Api, path
from rag_gateway.mcp.metrics import TOOL_CALLS, TOOL_SECONDS

Mode = Literal["hybrid", "dense", "lexical"]
Filter = Annotated[
    dict[str, Any] | None,
    Field(
        description='Metadata filter, as in the search API: {"field": value}, or operators '
        'such as {"year": {"$gte": 2020}}, {"$and": [...]}, {"$or": [...]}'
    ),
]
Collection = Annotated[str, Field(description="The collection's name (list_collections)")]
READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, openWorldHint=False)
# A streamed answer's text goes out in progress notifications at most this often (the pieces
# written in between are sent together): a notification per token would be one per word.
PROGRESS_SECONDS = 0.2
P = ParamSpec("P")
R = TypeVar("R")


class CollectionInfo(BaseModel):
    name: str
    documents: int | None = Field(None, description="Documents (with the ingest:read scope)")
    chunks: int | None = None
    embedding_model: str | None = None
    description: str | None = None


class Collections(BaseModel):
    collections: list[CollectionInfo]


class Passage(BaseModel):
    chunk_id: str
    document_id: str
    score: float
    text: str
    position: int = Field(description="The chunk's position in its document, from 0")
    title: str | None = None
    source: str | None = None
    page: int | None = None
    heading: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResults(BaseModel):
    collection: str
    query: str
    mode: str
    results: list[Passage]


class Source(BaseModel):
    number: int = Field(description="What the answer cites as [number]")
    chunk_id: str
    document_id: str
    quote: str
    title: str | None = None
    source: str | None = None
    page: int | None = None
    heading: str | None = None


class Answer(BaseModel):
    collection: str
    question: str
    answer: str = Field(description="The answer, citing its sources as [1], [2]...")
    cited: list[int] = Field(description="The numbers of the sources the answer cites")
    sources: list[Source]
    generator: str


class Chunk(BaseModel):
    id: str
    position: int
    text: str
    page: int | None = None
    heading: str | None = None


class Document(BaseModel):
    collection: str
    id: str
    version: int
    chunk_count: int
    title: str | None = None
    source: str | None = None
    filename: str | None = None
    format: str | None = None
    metadata: dict[str, Any] | None = None
    chunks: list[Chunk] = Field(description="The chunks asked for, in document order")
    truncated: bool = Field(False, description="Whether the document has chunks not returned")


def build_server(api_of: Any, *, max_document_chunks: int) -> MCPServer[Any]:
    """The MCP server; ``api_of(ctx)`` is the public API as the caller of the request."""
    server: MCPServer[Any] = MCPServer(
        name="rag-engine",
        title="RAG Engine",
        version=package_version("rag-gateway"),
        instructions="Search and answer from the collections of a RAG Engine knowledge base. "
        "Call list_collections first; answer gives an answer citing numbered sources; search "
        "gives the passages themselves; get_document reads a document or a passage in context.",
    )

    @server.tool(annotations=READ_ONLY)
    @measured
    async def list_collections(ctx: Context) -> Collections:
        """The collections this credential may use."""
        api: Api = api_of(ctx)
        if "ingest:read" in api.principal.scopes:
            listed = await api.call("GET", path("collections"))
            return Collections(
                collections=[
                    CollectionInfo(
                        name=c["name"],
                        documents=c.get("document_count"),
                        chunks=c.get("chunk_count"),
                        embedding_model=c.get("embedding_model"),
                        description=c.get("description") or None,
                    )
                    for c in listed["collections"]
                ]
            )
        models = await api.call("GET", path("models"))  # query:read: one model per collection
        names = [m["id"] for m in models["data"] if ":" not in m["id"]]
        return Collections(collections=[CollectionInfo(name=name) for name in names])

    @server.tool(annotations=READ_ONLY)
    @measured
    async def search(
        collection: Collection,
        query: str,
        ctx: Context,
        top_k: Annotated[int, Field(ge=1, description="How many passages")] = 5,
        mode: Annotated[Mode | None, Field(description="Default: the server's")] = None,
        filter: Filter = None,  # the API's own name for it
    ) -> SearchResults:
        """The passages of a collection that best match the query (hybrid, dense or lexical
        retrieval), best first."""
        api: Api = api_of(ctx)
        body = {"query": query, "top_k": top_k, "mode": mode, "filter": filter}
        found = await api.call("POST", path("collections", collection, "search"), _given(body))
        return SearchResults.model_validate(found)

    @server.tool(annotations=READ_ONLY)
    @measured
    async def answer(
        collection: Collection,
        question: str,
        ctx: Context,
        top_k: Annotated[int, Field(ge=1, description="Passages to answer from")] = 5,
        filter: Filter = None,
        generator: Annotated[
            Literal["extractive", "openai", "google"] | None,
            Field(description="Default: the server's"),
        ] = None,
    ) -> Answer:
        """An answer to the question from the collection's passages, citing them as [1], [2]...
        Progress notifications carry the answer's text as it is written."""
        api: Api = api_of(ctx)
        body = {
            "query": question,
            "top_k": top_k,
            "filter": filter,
            "generator": generator,
            "stream": True,
        }
        sources: list[dict[str, Any]] = []
        written, unsent, last = 0, "", 0.0
        # Closed as soon as the answer is done: its stream's place is given back at once.
        events = api.events(path("collections", collection, "query"), _given(body))
        async with contextlib.aclosing(events):
            async for event, data in events:
                if event == "sources":
                    sources = data["sources"]
                    await ctx.report_progress(0, None, f"{len(sources)} passages found")
                elif event == "token":
                    written, unsent = written + 1, unsent + data["text"]
                    if time.monotonic() - last >= PROGRESS_SECONDS:
                        await ctx.report_progress(written, None, unsent)
                        unsent, last = "", time.monotonic()
                elif event == "done":
                    if unsent:
                        await ctx.report_progress(written, None, unsent)
                    return Answer(
                        collection=collection,
                        question=question,
                        answer=data["answer"],
                        cited=data["cited"],
                        sources=[Source.model_validate(s) for s in sources],
                        generator=data["generator"],
                    )
                elif event == "error":
                    retry = " (temporary: try again)" if data.get("retry") else ""
                    raise ToolError(f"the answer failed: {data.get('message')}{retry}")
        raise ToolError("502 Bad gateway: the answer ended without a result")

    @server.tool(annotations=READ_ONLY)
    @measured
    async def get_document(
        collection: Collection,
        document_id: str,
        ctx: Context,
        chunk_id: Annotated[
            str | None,
            Field(description="A passage (a search result's chunk_id): it and its neighbours"),
        ] = None,
        neighbours: Annotated[
            int, Field(ge=0, le=10, description="Chunks either side of chunk_id")
        ] = 1,
    ) -> Document:
        """A document's metadata and text, in chunks: all of them (up to the server's limit),
        or the passage chunk_id names with its neighbours."""
        api: Api = api_of(ctx)
        found = await api.call("GET", path("collections", collection, "documents", document_id))
        stored = sorted(found.pop("chunks", None) or [], key=lambda c: int(c["position"]))
        if chunk_id is not None:
            at = next((i for i, c in enumerate(stored) if c["id"] == chunk_id), None)
            if at is None:
                raise ToolError(
                    f"404 Not found: document {document_id!r} has no chunk {chunk_id!r}"
                )
            stored = stored[max(0, at - neighbours) : at + neighbours + 1]
        kept = [Chunk.model_validate(c) for c in stored[:max_document_chunks]]
        return Document.model_validate(
            {
                **found,
                "collection": collection,
                "chunks": kept,
                "truncated": len(kept) < found.get("chunk_count", len(kept)),
            }
        )

    @server.resource(
        "rag://{collection}/documents/{document_id}",
        name="document",
        title="A document of a collection",
        description="A document's text as Markdown, its title and headings kept (the chunks "
        "in order; a very long one up to the server's limit).",
        mime_type="text/markdown",
        # A document id is no file path: the SDK's checks took "c:notes" for a Windows drive
        # and refused it. It is one segment of the API's path (rag_gateway.mcp.calls.path
        # quotes it, and a '/' or dot segment is refused there), never a file's name.
        security=ResourceSecurity(exempt_params={"document_id"}),
    )
    async def document_text(collection: str, document_id: str, ctx: Context) -> str:
        api: Api = api_of(ctx)
        route = path("collections", collection, "documents", document_id)
        try:
            found = await api.call("GET", route)
        except ToolError as refused:  # told to the client as the resource's error
            missing = str(refused).startswith("404")
            raise (ResourceNotFoundError if missing else ResourceError)(str(refused)) from None
        return as_markdown(found, max_document_chunks)

    @server.prompt(title="Answer from a collection, with sources")
    def ask(collection: Collection, question: str) -> str:
        """A question to answer from a collection of the knowledge base, citing its sources."""
        return (
            f"Answer this question from the collection {collection!r} of the knowledge base: "
            f"{question}\n\nCall the search tool (or answer, for an answer it drafts) with "
            f"collection={collection!r}; read a passage's surroundings with get_document and "
            "its chunk_id when you need them. Say only what the passages say, cite each one "
            "you use by its title or source, and say so when they do not answer the question."
        )

    return server


def as_markdown(document: dict[str, Any], max_chunks: int) -> str:
    """A document of the API (with its chunks) as Markdown: its title, then each chunk's text
    under its heading path when that changes; the overlap between chunks is not removed."""
    lines = [f"# {document.get('title') or _code_span(document['id'])}", ""]
    if document.get("source"):
        lines += [f"Source: {document['source']}", ""]
    heading = None
    chunks = sorted(document.get("chunks") or [], key=lambda c: int(c["position"]))
    for chunk in chunks[:max_chunks]:
        if chunk.get("heading") and chunk["heading"] != heading:
            heading = chunk["heading"]
            lines += [f"## {heading}", ""]
        page = f"(page {chunk['page']}) " if chunk.get("page") else ""
        lines += [page + chunk["text"], ""]
    if len(chunks) > max_chunks:
        lines += [f"(The document has {len(chunks)} chunks; the first {max_chunks} are shown.)"]
    return "\n".join(lines).rstrip() + "\n"


def measured(tool: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """The tool, counted and timed (rag_gateway_mcp_tool_calls_total, _seconds)."""
    name = tool.__name__

    @functools.wraps(tool)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        started, outcome = time.perf_counter(), "error"
        try:
            result = await tool(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            TOOL_CALLS.labels(name, outcome).inc()
            TOOL_SECONDS.labels(name).observe(time.perf_counter() - started)

    return counted


def _given(body: dict[str, Any]) -> dict[str, Any]:
    """The fields that were given: the API's defaults hold for the others."""
    return {k: v for k, v in body.items() if v is not None}


def _code_span(text: str) -> str:
    """``text`` as inline code, shown as itself (an id such as ``[x](javascript:y)`` or ``<b>``
    is no link or markup): fenced by one backtick more than its longest run of them."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    fence = "`" * (longest + 1)
    return f"{fence}{pad}{text}{pad}{fence}"
