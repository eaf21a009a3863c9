"""The public API's route table: which service answers, which scope it needs, which collection
it touches. Anything not listed here is not part of the public API and is 404."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Upstream = Literal["ingest", "query"]
Kind = Literal[
    "plain",
    "collections",  # the collection list (filtered for keys limited to some collections)
    "create_collection",  # the new collection's name is in the body
    "documents_write",  # counts against the daily ingest bytes
    "jobs",  # the job list
    "job",  # one job: its collection decides
    "models",
    "chat",  # the collection is the model named in the body
    "evaluate",  # the collection is named in the JSON body
    "evaluate_files",  # the collection is a form field of a multipart body
    "evaluation",  # an evaluation's collection is in the answer
    "session",  # a chat session: the collection it is bound to decides
]

# Whether the answer is a long-lived stream (SSE): such requests use the gateway's pool for
# streams and count against the open-stream limits.
Streams = Literal["never", "always", "when_asked"]  # when_asked: `"stream": true` in the body

READ, WRITE, QUERY = "ingest:read", "ingest:write", "query:read"


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    scope: str
    kind: Kind = "plain"
    collection: str | None = None
    job_id: str | None = None
    session_id: str | None = None
    streams: Streams = "never"
    # Only reads: asking the service again changes nothing (GETs and searches).
    reads_only: bool = False


_C = r"(?P<collection>[^/]+)"
_J = r"(?P<job>[^/]+)"
_S = r"(?P<session>[^/]+)"
SEARCH = re.compile(rf"^/v1/collections/{_C}/search$")

# (pattern, {method: (upstream, scope, kind)}), in the order they are tried.
TABLE: list[tuple[re.Pattern[str], dict[str, tuple[Upstream, str, Kind]]]] = [
    (
        re.compile(r"^/v1/collections$"),
        {"GET": ("ingest", READ, "collections"), "POST": ("ingest", WRITE, "create_collection")},
    ),
    (
        re.compile(rf"^/v1/collections/{_C}$"),
        {"GET": ("ingest", READ, "plain"), "DELETE": ("ingest", WRITE, "plain")},
    ),
    (SEARCH, {"POST": ("query", QUERY, "plain")}),
    (re.compile(rf"^/v1/collections/{_C}/query$"), {"POST": ("query", QUERY, "plain")}),
    (
        re.compile(rf"^/v1/collections/{_C}/documents$"),
        {"GET": ("ingest", READ, "plain"), "POST": ("ingest", WRITE, "documents_write")},
    ),
    (
        re.compile(rf"^/v1/collections/{_C}/documents/(upload|url)$"),
        {"POST": ("ingest", WRITE, "documents_write")},
    ),
    (
        re.compile(rf"^/v1/collections/{_C}/documents/[^/]+$"),
        {
            "GET": ("ingest", READ, "plain"),
            "PUT": ("ingest", WRITE, "documents_write"),
            "DELETE": ("ingest", WRITE, "plain"),
        },
    ),
    (re.compile(r"^/v1/jobs$"), {"GET": ("ingest", READ, "jobs")}),
    (re.compile(rf"^/v1/jobs/{_J}$"), {"GET": ("ingest", READ, "job")}),
    (re.compile(rf"^/v1/jobs/{_J}/events$"), {"GET": ("ingest", READ, "job")}),
    (re.compile(rf"^/v1/jobs/{_J}/retry$"), {"POST": ("ingest", WRITE, "job")}),
    (re.compile(r"^/v1/models$"), {"GET": ("query", QUERY, "models")}),
    (re.compile(r"^/v1/chat/completions$"), {"POST": ("query", QUERY, "chat")}),
    (re.compile(r"^/v1/evaluate$"), {"POST": ("query", QUERY, "evaluate")}),
    (re.compile(r"^/v1/evaluate/beir$"), {"POST": ("query", QUERY, "evaluate_files")}),
    (re.compile(r"^/v1/evaluations/[^/]+$"), {"GET": ("query", QUERY, "evaluation")}),
    (
        re.compile(rf"^/v1/sessions/{_S}$"),
        {"GET": ("query", QUERY, "session"), "DELETE": ("query", QUERY, "session")},
    ),
]


STREAMING: list[tuple[re.Pattern[str], Streams]] = [
    (re.compile(rf"^/v1/jobs/{_J}/events$"), "always"),
    (re.compile(rf"^/v1/collections/{_C}/query$"), "when_asked"),
    (re.compile(r"^/v1/chat/completions$"), "when_asked"),
]


class NoRoute(Exception):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__("no route")
        self.allowed = allowed  # methods the path has (empty: the path is unknown)


def classify(method: str, path: str) -> Route:
    for pattern, methods in TABLE:
        match = pattern.match(path)
        if match is None:
            continue
        if method not in methods:
            raise NoRoute(sorted(methods))
        upstream, scope, kind = methods[method]
        groups = match.groupdict()
        return Route(
            upstream,
            scope,
            kind,
            groups.get("collection"),
            groups.get("job"),
            groups.get("session"),
            next((how for found, how in STREAMING if found.match(path)), "never"),
            reads_only=method in ("GET", "HEAD") or SEARCH.match(path) is not None,
        )
    raise NoRoute([])


def is_openai_path(path: str) -> bool:
    return path in ("/v1/models", "/v1/chat/completions")
