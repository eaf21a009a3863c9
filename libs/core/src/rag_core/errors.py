"""Domain errors and their RFC 9457 problem-details form."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Self

import msgspec
from litestar.exceptions import (
    ClientException,
    HTTPException,
    InternalServerException,
    SerializationException,
    ValidationException,
)
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from rag_telemetry import get_logger
from redis import exceptions as redis_errors

# Problem types are stable identifiers (RFC 9457 §3.1.1), documented in docs/api.md.
PROBLEM_TYPE_BASE = "urn:rag-engine:problem:"

log = get_logger("rag.errors")
REDIS_RETRY_AFTER = "2"  # seconds before a client tries again while Redis is unavailable


class RagError(Exception):
    """Base of the errors a RAG Engine service answers with a problem-details response."""

    status_code: int = HTTPStatus.INTERNAL_SERVER_ERROR
    problem: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}

    @classmethod
    def for_field(cls, field: str, message: str, *, detail: str | None = None) -> Self:
        """The error naming the input at fault: ``errors`` lists ``field`` with ``message``,
        and ``detail`` (for people) defaults to ``"field: message"``."""
        return cls(detail or f"{field}: {message}", extra=field_errors(field, message))


def field_errors(field: str, message: str) -> dict[str, Any]:
    """The ``errors`` member of a problem that names one field (its ``extra``)."""
    return {"errors": [{"field": field, "message": message}]}


class InvalidInput(RagError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY
    problem = "invalid-input"
    title = "Invalid input"


class NotFound(RagError):
    status_code = HTTPStatus.NOT_FOUND
    problem = "not-found"
    title = "Not found"


class Conflict(RagError):
    status_code = HTTPStatus.CONFLICT
    problem = "conflict"
    title = "Conflict"


class PayloadTooLarge(RagError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    problem = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(RagError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    problem = "unsupported-media-type"
    title = "Unsupported media type"


class TooManyRequests(RagError):
    """Over a limit of the caller (or its tenant) that passes with time; send Retry-After."""

    status_code = HTTPStatus.TOO_MANY_REQUESTS
    problem = "rate-limited"
    title = "Too many requests"


class DependencyUnavailable(RagError):
    """A backing service (Redis, Chroma, an LLM API) did not answer; retrying later may work."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    problem = "dependency-unavailable"
    title = "Dependency unavailable"


def problem_type(slug: str) -> str:
    return PROBLEM_TYPE_BASE + slug


def rag_error_to_problem(exc: RagError) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=exc.status_code,
        type_=problem_type(exc.problem),
        title=exc.title,
        detail=exc.detail,
        extra=exc.extra or None,
        headers=exc.headers or None,
    )


# nginx's status for a client that closed the connection first (no answer reaches it).
CLIENT_CLOSED_REQUEST = 499
_CLIENT_GONE = "client disconnected prematurely"  # Litestar's, reading a body


def http_exception_to_problem(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own errors (routing, validation) in the same shape as ours."""
    if isinstance(exc, InternalServerException) and exc.detail == _CLIENT_GONE:
        # The client went away while sending its body: not the server's failure, which it
        # was logged and counted as (a 500 any client could add to at will).
        return ProblemDetailsException(
            status_code=CLIENT_CLOSED_REQUEST,
            type_=problem_type("client-closed-request"),
            title="Client Closed Request",
            detail="the client closed the connection before its body was read",
        )
    status = HTTPStatus(exc.status_code)
    extra: dict[str, Any] | None = None
    detail = exc.detail if exc.detail != status.phrase else ""
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [
            {
                "field": item.get("key"),
                "source": item.get("source"),
                "message": item.get("message"),
            }
            for item in exc.extra
            if isinstance(item, dict)
        ]
        extra = {"errors": errors}
        if errors and errors[0]["field"]:
            detail = f"{errors[0]['field']}: {errors[0]['message']}"
    elif isinstance(exc, ValidationException | ClientException) and isinstance(
        exc.__cause__, SerializationException | msgspec.DecodeError
    ):
        # A body the JSON decoder refused before any field was read: named as the body (the
        # decoder's own path, "$[...][0]", hides the keys), with msgspec's one message for two
        # causes said as both.
        if detail == "Input data was truncated":
            detail = (
                "the body is not valid JSON: it ends too early, or holds half of a character "
                "(a lone surrogate escape such as \\ud800)"
            )
        extra = field_errors("body", detail)
    elif isinstance(exc.extra, dict):
        extra = exc.extra
    return ProblemDetailsException(
        status_code=exc.status_code,
        type_=problem_type(status.phrase.lower().replace(" ", "-")),
        title=status.phrase,
        detail=detail,
        extra=extra,
        headers=exc.headers,
    )


def redis_unavailable_to_problem(exc: Exception) -> ProblemDetailsException:
    """Redis down, restarting or loading its data: a 503 the client may retry, never a 500.
    The address and the driver's message go to the log only."""
    log.warning("redis_unavailable", error=type(exc).__name__, message=str(exc))
    return rag_error_to_problem(
        DependencyUnavailable(
            "Redis is unavailable; retry shortly", headers={"Retry-After": REDIS_RETRY_AFTER}
        )
    )


def undecodable_body_to_problem(exc: Exception) -> ProblemDetailsException:
    """A body that cannot be read at all: not UTF-8, or nested deeper than the decoder's
    stack (the only sources of these errors in a request are the client's bytes)."""
    reason = (
        "the request body is not valid UTF-8"
        if isinstance(exc, UnicodeDecodeError)
        else "the request body is nested too deeply to read"
    )
    if isinstance(exc, RecursionError):  # kept in full: our own code could recurse too
        log.warning("undecodable_body", error="RecursionError", exc_info=exc)
    else:
        log.info("undecodable_body", error=type(exc).__name__)
    return ProblemDetailsException(
        status_code=HTTPStatus.BAD_REQUEST,
        type_=problem_type("bad-request"),
        title="Bad Request",
        detail=reason,
        extra=field_errors("body", reason),
    )


def unexpected_error_to_problem(exc: Exception) -> ProblemDetailsException:
    """Anything unforeseen: logged in full here, answered without internals."""
    log.error("unhandled_exception", exc_info=exc)
    return ProblemDetailsException(
        status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        type_=problem_type("internal-error"),
        title="Internal error",
        detail="The server failed to handle this request; it has been logged.",
    )


def problem_details_plugin() -> ProblemDetailsPlugin:
    """Every error a service returns becomes ``application/problem+json``."""
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={
                HTTPException: http_exception_to_problem,
                RagError: rag_error_to_problem,
                redis_errors.ConnectionError: redis_unavailable_to_problem,
                redis_errors.TimeoutError: redis_unavailable_to_problem,
                UnicodeDecodeError: undecodable_body_to_problem,
                RecursionError: undecodable_body_to_problem,
                Exception: unexpected_error_to_problem,
            }
        )
    )
