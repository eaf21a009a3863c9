"""The public API's route table: which service answers, which scope it needs, which collection
it touches, and what else the gateway asks of the caller there (its kind's Policy, applied by
rag_gateway.policy). Anything not listed here is not part of the public API and is 404."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Upstream = Literal["ingest", "query"]
Kind = Literal[
    "plain",
    "collections",
    "create_collection",
    "documents_write",
    "jobs",
    "job",
    "models",
    "model",
    "chat",
    "evaluate",
    "evaluate_files",
    "evaluation",
    "session",
]

# Whether the answer is a long-lived stream (SSE): such requests use the gateway's pool for
# streams and count against the open-stream limits.
Streams = Literal["never", "always", "when_asked"]  # when_asked: `"stream": true` in the body

READ, WRITE, QUERY = "ingest:read", "ingest:write", "query:read"


@dataclass(frozen=True)
class Policy:
    """What a kind of route asks of its caller besides what every /v1 route asks (a valid
    credential, the route's scope, one request off the rate limit, the collection its path
    names): where else a key limited to some collections finds the collection a request
    touches, and which limits the request counts against."""

    # The field of the JSON body that names the collection (its part before any ':').
    collection_field: str | None = None
    # The job or chat session the path names: the collection it belongs to decides (one bound
    # to no collection, from before sessions were bound, counts as none).
    owner: Literal["job", "session"] | None = None
    # The answer names collections: a listing is kept to the key's, an evaluation of another
    # collection does not exist for it.
    answer: Literal["collections", "jobs", "models", "model", "evaluation"] | None = None
    # What a key limited to some collections is told, when it may not use the route at all.
    closed_to_limited_keys: str | None = None
    # The body counts against the daily ingest bytes (so it needs a Content-Length), and so do
    # the pages a URL ingest fetches.
    ingest_quota: bool = False
    # The body may be large and slow: it counts against the uploads-in-progress limits, travels
    # on the upload pool, and must arrive within UPLOAD_BODY_TIMEOUT_SECONDS.
    upload: bool = False


POLICIES: dict[Kind, Policy] = {
    "plain": Policy(),
    "collections": Policy(answer="collections"),
    "create_collection": Policy(collection_field="name"),
    "documents_write": Policy(ingest_quota=True, upload=True),
    "jobs": Policy(answer="jobs"),
    "job": Policy(owner="job"),
    "models": Policy(answer="models"),
    "model": Policy(answer="model"),  # the model is a collection, or collection:generator
    "chat": Policy(collection_field="model"),  # the model is the collection
    "evaluate": Policy(collection_field="collection"),
    # The collection is a form field of a multipart body, which the gateway does not read.
    "evaluate_files": Policy(
        closed_to_limited_keys="a key limited to some collections cannot upload evaluation files",
        upload=True,
    ),
    "evaluation": Policy(answer="evaluation"),
    "session": Policy(owner="session"),
}


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

    @property
    def policy(self) -> Policy:
        return POLICIES[self.kind]


_C = r"(?P<collection>[^/]+)"
_J = r"(?P<job>[^/]+)"
_S = r"(?P<session>[^/]+)"
SEARCH = re.compile(rf"^/v1/collections/{_C}/search$")

# (pattern, {method: (upstream, scope, kind)}), in the order they are tried; the kind's Policy
# (POLICIES) and STREAMING below say the rest.
TABLE: list[tuple[re.Pattern[str], dict[str, tuple[Upstream, str, Kind]]]] = [
    (
        re.compile(r"^/v1/collections$"),
        {"GET": ("ingest", READ, "collections"), "POST": ("ingest", WRITE, "create_collection")},
    ),
    (
        re.compile(rf"^/v1/collections/{_C}$"),
        {"GET": ("ingest", READ, "plain"), "DELETE": ("ingest", WRITE, "plain")},
    ),
    (
        re.compile(rf"^/v1/collections/{_C}/reembed$"),
        {"POST": ("ingest", WRITE, "plain"), "DELETE": ("ingest", WRITE, "plain")},
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
    (re.compile(r"^/v1/models/[^/]+$"), {"GET": ("query", QUERY, "model")}),
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
        match = pattern.fullmatch(path)
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
            next((how for found, how in STREAMING if found.fullmatch(path)), "never"),
            reads_only=method in ("GET", "HEAD") or SEARCH.fullmatch(path) is not None,
        )
    raise NoRoute([])


def is_openai_path(path: str) -> bool:
    """Paths OpenAI's clients call, or might: every answer there, errors too, in its shape."""
    return path in ("/v1/models", "/v1/chat") or path.startswith(("/v1/models/", "/v1/chat/"))
