"""structlog set-up: one format for our own lines and for every stdlib/third-party logger."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

MASK = "***"
# Keys whose values are secret whatever they hold: these names, or names ending in _<name>.
# (Counts such as prompt_tokens or max_tokens are not secrets and are left alone.)
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "set_cookie",
        "access_token",
        "refresh_token",
        "id_token",
        "jwt",
        "private_key",
        "client_secret",
        "credentials",
    }
)
# Third-party loggers that are chatty at INFO; they still log warnings and errors.
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "chromadb.telemetry",
    "opentelemetry",
    "watchfiles",
    "asyncio",
)


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add the current OpenTelemetry trace and span ids, when a span is active."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


class SecretMasker:
    """Replace known secret values anywhere in a log line, and values of secret-looking keys."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Very short "secrets" would mask ordinary words; they are refused by config anyway.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        for key, value in list(event_dict.items()):
            event_dict[key] = self._clean(key, value)
        return event_dict

    def _clean(self, key: str, value: Any) -> Any:
        if is_secret_key(key) and value not in (None, ""):
            return MASK
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, Mapping):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value

    def _mask_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or any(name.endswith(f"_{secret}") for secret in SECRET_KEYS)


def _add_service(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in this key.
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    log_format: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str] = (),
    stream: Any = None,
    cache_loggers: bool = True,
) -> None:
    """Route structlog and the stdlib root logger through one renderer on stdout.

    ``cache_loggers=False`` lets tests configure logging more than once in a process.
    """
    stream = stream or sys.stdout
    use_console = log_format == "console" or (
        log_format == "auto" and hasattr(stream, "isatty") and stream.isatty()
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        add_trace_context,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        # Exceptions become data here, before masking, so their messages are masked too;
        # frame locals are never rendered (they hold connection strings, keys, documents).
        structlog.processors.format_exc_info
        if use_console
        else structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        SecretMasker(secrets),
    ]
    renderer: Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache_loggers,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "chromadb"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def bind_log_context(**values: Any) -> Mapping[str, Any]:
    """Bind values to every log line of the current context; returns tokens for reset."""
    return structlog.contextvars.bind_contextvars(**values)


def reset_log_context(tokens: Mapping[str, Any]) -> None:
    structlog.contextvars.reset_contextvars(**tokens)


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)
