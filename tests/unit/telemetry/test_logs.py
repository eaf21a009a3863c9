"""Log lines: JSON with service and level, stdlib loggers routed through, secrets masked."""

from __future__ import annotations

import io
import json
import logging

import structlog
from rag_telemetry import SecretMasker, configure_logging

from tests.support.logs import CapturedLogs


def test_structlog_and_stdlib_lines_share_one_json_format() -> None:
    logs = CapturedLogs(service="query")
    structlog.stdlib.get_logger("rag.test").info("from_structlog", answer=42)
    logging.getLogger("uvicorn.error").warning("from %s", "uvicorn")
    logging.getLogger("chromadb.api").error("from chroma")
    first, second, third = logs.lines()
    assert first["event"] == "from_structlog"
    assert first["answer"] == 42
    assert second["event"] == "from uvicorn"
    assert second["logger"] == "uvicorn.error"
    assert third["level"] == "error"
    for line in (first, second, third):
        assert line["service"] == "query"
        assert line["timestamp"].endswith("Z")


def test_known_secrets_are_masked_everywhere() -> None:
    secret = "sk-test-abcdefghijklmnop"
    logs = CapturedLogs(secrets=(secret,))
    structlog.stdlib.get_logger().info(
        "calling provider", url=f"https://api/?key={secret}", nested={"deep": [secret]}
    )
    logging.getLogger("httpx").warning("request with %s failed", secret)
    structlog.stdlib.get_logger().info("login", password="plain", api_key="whatever")
    text = logs.text()
    assert secret not in text
    assert "plain" not in text
    masked = logs.lines()
    assert masked[0]["url"] == "https://api/?key=***"
    assert masked[0]["nested"] == {"deep": ["***"]}
    assert masked[2]["password"] == "***"
    assert masked[2]["api_key"] == "***"


def test_masker_ignores_trivially_short_values() -> None:
    masker = SecretMasker(["ab", "long-secret"])
    event = masker(None, "info", {"event": "a long-secret and ab"})
    assert event["event"] == "a *** and ab"


def test_level_filters_lines() -> None:
    stream = io.StringIO()
    configure_logging("t", level="WARNING", log_format="json", stream=stream, cache_loggers=False)
    structlog.stdlib.get_logger().info("hidden")
    logging.getLogger("x").info("hidden too")
    structlog.stdlib.get_logger().warning("shown")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["shown"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_format_on_a_terminal_and_json_otherwise() -> None:
    tty = _Tty()
    configure_logging("t", log_format="auto", stream=tty, cache_loggers=False)
    structlog.stdlib.get_logger().info("hello")
    assert "hello" in tty.getvalue()
    assert not tty.getvalue().lstrip().startswith("{")

    pipe = io.StringIO()
    configure_logging("t", log_format="auto", stream=pipe, cache_loggers=False)
    structlog.stdlib.get_logger().info("hello")
    assert json.loads(pipe.getvalue())["event"] == "hello"


def _connect(url: str) -> None:
    password = "hunter2-local-secret"  # a local that must never reach a log line
    raise ConnectionError(f"cannot reach {url} with {password}")


def test_exceptions_are_masked_and_never_show_frame_locals() -> None:
    secret = "sk-exception-secret-123"
    logs = CapturedLogs(secrets=(secret, "hunter2-local-secret"))
    try:
        _connect(f"https://api.example/?key={secret}")
    except ConnectionError:
        structlog.stdlib.get_logger().exception("provider_failed")
        logging.getLogger("uvicorn.error").exception("stdlib saw it too")
    text = logs.text()
    assert secret not in text
    assert "hunter2-local-secret" not in text
    first, second = logs.lines()
    for line in (first, second):
        frames = line["exception"][0]["frames"]
        assert frames, "the traceback itself is kept"
        assert all("locals" not in frame for frame in frames)
        assert "***" in line["exception"][0]["exc_value"]


def test_counts_with_token_in_their_name_are_not_masked() -> None:
    logs = CapturedLogs()
    structlog.stdlib.get_logger().info(
        "usage", prompt_tokens=12, max_tokens=256, token_count=3, access_token="abc", token="t"
    )
    line = logs.lines()[0]
    assert (line["prompt_tokens"], line["max_tokens"], line["token_count"]) == (12, 256, 3)
    assert line["access_token"] == "***"
    assert line["token"] == "***"
