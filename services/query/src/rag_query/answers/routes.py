"""POST /v1/collections/{collection}/query: an answer with citations, as JSON or as SSE;
GET/DELETE /v1/sessions/{id}: a chat session's history."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK
from rag_config import QuerySettings
from rag_core.errors import DependencyUnavailable, NotFound, RagError
from rag_core.tenancy import tenant_of

from rag_query.answers.service import (
    AnswerOptions,
    AnswerService,
    DoneEvent,
    ErrorEvent,
    SourcesEvent,
    TokenEvent,
)
from rag_query.answers.sessions import SessionStore
from rag_query.retrieval.routes import SearchBody, search_request


class QueryBody(SearchBody, forbid_unknown_fields=True):
    top_k: int = 5
    generator: Literal["extractive", "openai", "google"] | None = None
    strategy: Literal["none", "multi_query", "hyde", "step_back"] = "none"
    rerank: Literal["none", "llm", "cohere"] = "none"
    session_id: str | None = None
    cache: bool = True
    stream: bool = False


class SourceOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A numbered passage the answer may cite as [number]."""

    number: int
    chunk_id: str
    document_id: str
    title: str | None = None
    source: str | None = None
    page: int | None = None
    heading: str | None = None
    quote: str


class TokenUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class AnswerOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An answer, its sources and what produced it; the optional fields only when they apply."""

    collection: str
    query: str
    answer: str
    sources: list[SourceOut]
    cited: list[int]
    generator: str
    usage: TokenUsage
    cached: bool
    fallback_from: list[str] | None = None  # the generators that failed before this one
    rewrites: list[str] | None = None
    standalone_question: str | None = None
    session_id: str | None = None
    warnings: list[str] | None = None
    timings: dict[str, float] | None = None  # not when nothing was found to answer from


class TurnOut(msgspec.Struct):
    role: str
    content: str


class SessionOut(msgspec.Struct):
    session_id: str
    collection: str | None
    turns: list[TurnOut]


class SessionDeleted(msgspec.Struct):
    deleted: str


class GenerationFailed(RagError):
    status_code = 502
    problem = "generation-failed"
    title = "Generation failed"


def answer_options(body: QueryBody, settings: QuerySettings) -> AnswerOptions:
    return AnswerOptions(
        search=search_request(body, settings),
        generator=body.generator,
        strategy=body.strategy,
        rerank=body.rerank,
        session_id=body.session_id,
        use_cache=body.cache,
    )


def _sse(event: str, data: Any) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=event, data=msgspec.json.encode(data).decode())


class QueryController(Controller):
    path = "/v1/collections/{collection:str}/query"
    tags = ["answers"]

    @post(
        "",
        status_code=HTTP_200_OK,
        summary="Answer a question from a collection, with citations",
        # The annotation cannot carry the JSON answer's model (or with `stream`, SSE).
        responses={
            HTTP_200_OK: ResponseSpec(
                AnswerOut,
                description="The answer (with `stream: true`, server-sent events)",
                generate_examples=False,
            )
        },
    )
    async def query(
        self,
        collection: FromPath[str],
        data: JSONBody[QueryBody],
        answer_service: NamedDependency[AnswerService],
        settings: NamedDependency[QuerySettings],
        request: Request[Any, Any, Any],
    ) -> Response[AnswerOut] | ServerSentEvent:
        """Retrieve, fit the best passages into CONTEXT_MAX_TOKENS, generate an answer citing
        them as [1], [2]... With `stream: true`, server-sent events: `sources`, then `token`s,
        then `done` (answer, usage, timings) or `error`."""
        prepared = await answer_service.prepare(
            collection, answer_options(data, settings), tenant_of(request)
        )
        if data.stream:

            async def stream() -> AsyncGenerator[ServerSentEventMessage, None]:
                try:
                    async for event in answer_service.events(prepared, streaming=True):
                        if isinstance(event, SourcesEvent):
                            yield _sse("sources", {"sources": event.sources})
                        elif isinstance(event, TokenEvent):
                            yield _sse("token", {"text": event.text})
                        elif isinstance(event, DoneEvent):
                            done = {k: v for k, v in event.result.items() if k != "sources"}
                            yield _sse("done", done)
                        else:
                            yield _sse(
                                "error", {"message": event.message, "retry": event.transient}
                            )
                except Exception as exc:  # never a cut connection: say what went wrong
                    yield _sse(
                        "error",
                        {"message": f"the answer failed ({type(exc).__name__})", "retry": True},
                    )

            return ServerSentEvent(stream())
        async for event in answer_service.events(prepared, streaming=False):
            if isinstance(event, DoneEvent):
                answer = {"collection": collection, "query": data.query, **event.result}
                return Response(msgspec.convert(answer, AnswerOut))
            if isinstance(event, ErrorEvent):
                if event.transient:
                    raise DependencyUnavailable(event.message)
                raise GenerationFailed(event.message)
        raise GenerationFailed("the answer ended without a result")


class SessionController(Controller):
    path = "/v1/sessions/{session_id:str}"
    tags = ["answers"]

    @get("", summary="A chat session's turns")
    async def history(
        self,
        session_id: FromPath[str],
        sessions: NamedDependency[SessionStore],
        tenant: NamedDependency[str],
    ) -> SessionOut:
        turns = await sessions.history(tenant, SessionStore.check_id(session_id))
        if not turns:
            raise NotFound(f"session {session_id!r} does not exist (or has expired)")
        return SessionOut(
            session_id,
            await sessions.collection_of(tenant, session_id),
            [TurnOut(t.role, t.content) for t in turns],
        )

    @delete("", status_code=HTTP_200_OK, summary="Forget a chat session")
    async def forget(
        self,
        session_id: FromPath[str],
        sessions: NamedDependency[SessionStore],
        tenant: NamedDependency[str],
    ) -> SessionDeleted:
        if not await sessions.clear(tenant, SessionStore.check_id(session_id)):
            raise NotFound(f"session {session_id!r} does not exist (or has expired)")
        return SessionDeleted(session_id)
