"""GET /v1/models, GET /v1/models/{model} and POST /v1/chat/completions, as the OpenAI API
defines them.

A model is a collection (answered by the default generator) or ``collection:generator``.
The last user message is the question and earlier turns are the conversation; the answer
cites its sources as [1], [2] in the content, followed by a Markdown list of the sources it
cites (openai_api.citations), and the sources come in an extra ``sources`` field. Errors
use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK
from rag_config import QuerySettings
from rag_core.catalog import CollectionCatalog
from rag_core.errors import InvalidInput, NotFound, RagError
from rag_core.tenancy import tenant_of
from rag_core.tokens import count_tokens
from rag_telemetry import get_logger

from rag_query.answers.generators import Generators
from rag_query.answers.routes import SourceOut
from rag_query.answers.service import (
    AnswerOptions,
    AnswerService,
    DoneEvent,
    ErrorEvent,
    Event,
    TokenEvent,
)
from rag_query.answers.sessions import SessionStore
from rag_query.generation.base import Message
from rag_query.openai_api.citations import CitationStyle, citation_list, without_citation_list
from rag_query.openai_api.conversation_tasks import about_the_conversation, reply_events
from rag_query.openai_api.limits import (
    OutputLimit,
    refuse_unsupported,
    stop_sequences,
    token_limit,
)
from rag_query.retrieval.routes import SearchBody, search_request

log = get_logger("rag.openai")


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    """Sampling fields OpenAI clients send (temperature, top_p, seed...) are accepted and
    ignored, as other OpenAI-compatible servers do; the length and end of the answer
    (``max_tokens``, ``max_completion_tokens``, ``stop``) are honoured (openai_api.limits),
    and what cannot be (``n`` above 1, ``tools``) is refused."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    tools: list[dict[str, Any]] | None = None
    top_k: int | None = None  # extension: passages to retrieve
    session_id: str | None = None  # extension: keep the conversation server-side
    citations: CitationStyle | None = None  # extension: CHAT_CITATIONS for this request


# OpenAI's response shapes, field for field (in its order), so that its SDKs read them.


class OpenAIModel(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag-engine"


class OpenAIModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ChatCompletionMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(msgspec.Struct, kw_only=True):
    """A chat completion, with the passages the answer cites in ``sources`` (an extension)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage
    sources: list[SourceOut]


def _error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every error of these routes in OpenAI's shape."""
    if isinstance(exc, RagError):
        # OpenAI answers every invalid request with 400, which its SDKs expect.
        status = 400 if exc.status_code == 422 else int(exc.status_code)
        errors = exc.extra.get("errors") or [{}]
        param = errors[0].get("field")
        kind = "invalid_request_error" if status < 500 else "server_error"
        code = "model_not_found" if isinstance(exc, NotFound) else exc.problem
        return Response(
            _error_body(exc.detail, kind, param, code), status_code=status, headers=exc.headers
        )
    if isinstance(exc, ValidationException):
        first = exc.extra[0] if isinstance(exc.extra, list) and exc.extra else {}
        field = first.get("key") if isinstance(first, dict) else None
        message = f"{field}: {first.get('message')}" if field else exc.detail
        return Response(
            _error_body(f"invalid request: {message}", "invalid_request_error", field, None),
            status_code=400,
        )
    if isinstance(exc, HTTPException):
        return Response(
            _error_body(exc.detail, "invalid_request_error", None, None),
            status_code=exc.status_code,
        )
    log.exception("chat_completion_failed")
    return Response(_error_body("internal error", "server_error", None, None), status_code=500)


def _usage(usage: dict[str, int], limit: OutputLimit, added: str) -> CompletionUsage:
    """The generator's count and the citation list's (``added``); under a limit (which may
    have cut them), what was sent, counted (rag_core.tokens)."""
    if limit.active:
        completion = count_tokens(limit.text)
    else:
        completion = usage["output_tokens"] + (count_tokens(added) if added else 0)
    return CompletionUsage(usage["input_tokens"], completion, usage["input_tokens"] + completion)


def _cited_list(result: dict[str, Any], style: CitationStyle) -> str:
    return citation_list(result["sources"], result["cited"]) if style == "list" else ""


def _model_ids(name: str, generators: Generators, settings: QuerySettings) -> list[str]:
    """The models of collection ``name``: itself (the default generator), then
    ``name:generator`` for every other generator configured."""
    others = [g for g in generators.available() if g != settings.generator]
    return [name, *(f"{name}:{generator}" for generator in others)]


# OpenAI's roles; the system's and tools' turns are not the conversation's.
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _text(content: str | list[dict[str, Any]] | None, where: str = "messages") -> str:
    if isinstance(content, str):
        return content
    texts = [part.get("text") for part in content or [] if part.get("type") == "text"]
    if any(not isinstance(text, str) for text in texts):  # a null one was asked as "None"
        raise InvalidInput.for_field(f"{where}.content", "a text part's text must be a string")
    return "".join(texts)  # type: ignore[arg-type]  # all str, checked above


def _earlier_turn(message: ChatMessage) -> Message:
    """A user or assistant turn before the question; an answer without the list of sources
    this route added to it."""
    text = _text(message.content)
    if message.role == "assistant":
        text = without_citation_list(text)
    return Message(message.role, text)  # type: ignore[arg-type]  # the caller keeps these two


def split_model(model: str, generators: Generators) -> tuple[str, str | None]:
    name, _, generator = model.partition(":")
    if generator:
        generators.check(generator, field="model")
    return name, generator or None


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai"]
    # The exception types the app maps to problem details, so these win for this layer.
    exception_handlers = {
        RagError: openai_error,
        HTTPException: openai_error,
        Exception: openai_error,
    }

    @get("/models", summary="Models: one per collection, and per collection and generator")
    async def models(
        self,
        catalog: NamedDependency[CollectionCatalog],
        generators: NamedDependency[Generators],
        settings: NamedDependency[QuerySettings],
        tenant: NamedDependency[str],
    ) -> OpenAIModelList:
        data = [
            OpenAIModel(id=model, created=int(collection.created_at))
            for collection in await catalog.all(tenant)
            for model in _model_ids(collection.name, generators, settings)
        ]
        return OpenAIModelList(data=data)

    @get("/models/{model:str}", summary="One model: a collection, or a collection:generator")
    async def model(
        self,
        model: FromPath[str],
        catalog: NamedDependency[CollectionCatalog],
        generators: NamedDependency[Generators],
        settings: NamedDependency[QuerySettings],
        tenant: NamedDependency[str],
    ) -> OpenAIModel:
        """What GET /v1/models lists under ``model``; 404 (``model_not_found``) otherwise."""
        name = model.partition(":")[0]
        collection = await catalog.find(tenant, name)
        if collection is None or model not in _model_ids(name, generators, settings):
            raise NotFound(f"the model {model!r} does not exist")
        return OpenAIModel(id=model, created=int(collection.created_at))

    @post(
        "/chat/completions",
        status_code=HTTP_200_OK,
        summary="Chat completion from a collection",
        # The annotation cannot carry the JSON completion's model (or with `stream`, SSE).
        responses={
            HTTP_200_OK: ResponseSpec(
                ChatCompletion,
                description="The completion (with `stream: true`, server-sent chunks)",
                generate_examples=False,
            )
        },
    )
    async def chat(
        self,
        data: JSONBody[ChatRequest],
        answer_service: NamedDependency[AnswerService],
        catalog: NamedDependency[CollectionCatalog],
        generators: NamedDependency[Generators],
        settings: NamedDependency[QuerySettings],
        request: Request[Any, Any, Any],
    ) -> Response[ChatCompletion] | Response[dict[str, Any]] | ServerSentEvent:
        collection, generator = split_model(data.model, generators)
        refuse_unsupported(data.n, data.tools)
        stop = stop_sequences(data.stop)
        max_tokens = token_limit(
            max_completion_tokens=data.max_completion_tokens, max_tokens=data.max_tokens
        )
        limit = OutputLimit(max_tokens, stop)
        for index, message in enumerate(data.messages):
            if message.role not in ROLES:  # silently left out before
                raise InvalidInput.for_field(
                    f"messages[{index}].role", f"allowed: {', '.join(sorted(ROLES))}"
                )
            _text(message.content, f"messages[{index}]")
        turns = [m for m in data.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user" or not _text(turns[-1].content).strip():
            raise InvalidInput.for_field(
                "messages",
                "no question",
                detail="messages: the last message must be a non-empty user message (the question)",
            )
        question = _text(turns[-1].content)
        if len(question) > settings.max_query_chars:  # named "query", which this API has not
            raise InvalidInput.for_field(
                "messages",
                f"the question is longer than {settings.max_query_chars} characters "
                "(MAX_QUERY_CHARS)",
            )
        history = tuple(_earlier_turn(m) for m in turns[:-1])
        # Checked before anything is answered, a frontend's task too (it skipped them).
        search = search_request(
            SearchBody(query=question, top_k=5 if data.top_k is None else data.top_k), settings
        )  # a top_k of 0 was the default 5
        if data.session_id is not None:
            SessionStore.check_id(data.session_id)
        style = data.citations or settings.chat_citations
        events: Callable[[bool], AsyncIterator[Event]]
        no_claims = settings.no_claims
        if (generator or settings.generator) == "extractive" and about_the_conversation(
            question, no_claims
        ):
            await catalog.get(tenant_of(request), collection)  # 404 as for any request

            def events(streaming: bool) -> AsyncIterator[Event]:
                return reply_events(collection, question, streaming=streaming)

        else:
            options = AnswerOptions(
                search=search,
                generator=generator,
                session_id=data.session_id,
                history=history,
            )
            prepared = await answer_service.prepare(collection, options, tenant_of(request))

            def events(streaming: bool) -> AsyncIterator[Event]:
                return answer_service.events(prepared, streaming=streaming)

        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not data.stream:
            async for event in events(False):
                if isinstance(event, ErrorEvent):
                    return Response(
                        _error_body(event.message, "server_error", None, "generation_failed"),
                        status_code=503 if event.transient else 502,
                    )
                if isinstance(event, DoneEvent):
                    result = event.result
                    added = _cited_list(result, style)
                    # = limit.text
                    content = limit.feed(result["answer"]) + limit.feed(added) + limit.close()
                    return Response(
                        ChatCompletion(
                            id=completion_id,
                            created=created,
                            model=data.model,
                            choices=[
                                ChatCompletionChoice(
                                    message=ChatCompletionMessage(content=content),
                                    finish_reason=limit.finish_reason,
                                )
                            ],
                            usage=_usage(result["usage"], limit, added),
                            sources=msgspec.convert(result["sources"], list[SourceOut]),
                        )
                    )
            raise RuntimeError("the answer ended without a result")

        include_usage = bool(data.stream_options and data.stream_options.include_usage)

        def chunk(
            delta: dict[str, Any], finish: str | None, **extra: Any
        ) -> ServerSentEventMessage:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": data.model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **extra,
            }
            return ServerSentEventMessage(data=msgspec.json.encode(body).decode())

        async def stream() -> AsyncGenerator[ServerSentEventMessage, None]:
            yield chunk({"role": "assistant", "content": ""}, None)
            try:
                async for event in events(True):
                    if isinstance(event, TokenEvent):
                        # Past a cut the rest is read and dropped: the answer's record (its
                        # session turn, its cache entry) is the generator's whole answer.
                        if text := limit.feed(event.text):
                            yield chunk({"content": text}, None)
                    elif isinstance(event, ErrorEvent):
                        error = _error_body(
                            event.message, "server_error", None, "generation_failed"
                        )
                        yield ServerSentEventMessage(data=msgspec.json.encode(error).decode())
                        return
                    elif isinstance(event, DoneEvent):
                        result = event.result
                        added = _cited_list(result, style)
                        if text := limit.feed(added) + limit.close():
                            yield chunk({"content": text}, None)
                        yield chunk({}, limit.finish_reason, sources=result["sources"])
                        if include_usage:
                            body = {
                                "id": completion_id,
                                "object": "chat.completion.chunk",
                                "created": created,
                                "model": data.model,
                                "choices": [],
                                "usage": _usage(result["usage"], limit, added),
                            }
                            yield ServerSentEventMessage(data=msgspec.json.encode(body).decode())
            except Exception as exc:  # never a cut connection
                error = _error_body(
                    f"the answer failed ({type(exc).__name__})", "server_error", None, None
                )
                yield ServerSentEventMessage(data=msgspec.json.encode(error).decode())
                return
            yield ServerSentEventMessage(data="[DONE]")

        return ServerSentEvent(stream())
