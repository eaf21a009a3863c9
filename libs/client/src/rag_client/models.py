"""Typed results of the public API. Fields the server adds later are ignored, so an older
client keeps working against a newer server; ``raw`` on the calls that need it keeps the rest."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T")

JobState = Literal["queued", "running", "succeeded", "failed", "dead"]
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "dead"})


class Model(msgspec.Struct, kw_only=True, omit_defaults=True):
    def to_dict(self) -> dict[str, Any]:
        built: dict[str, Any] = msgspec.to_builtins(self)
        return built


def convert(data: Any, into: type[T]) -> T:
    """``data`` (decoded JSON) as ``into``; a malformed answer is a clear ValueError."""
    try:
        return msgspec.convert(data, into, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"unexpected answer from the server ({into.__name__}): {exc}") from None


# Collections and documents ------------------------------------------------------------------


class Reembedding(Model):
    """A re-embedding not switched in yet: running, or stopped and waiting to be resumed or
    cancelled."""

    job_id: str
    embedding_model: str


class Collection(Model):
    name: str
    embedding_model: str = ""
    dimension: int = 0
    created_at: float = 0.0
    version: int = 0
    document_count: int = 0
    chunk_count: int = 0
    description: str = ""
    reembedding: Reembedding | None = None


class Chunk(Model):
    id: str
    position: int
    text: str
    tokens: int = 0
    page: int | None = None
    heading: str | None = None
    content_hash: str | None = None  # the same text has the same hash (its vector is reused)
    header: str | None = None  # what it is indexed after: its document's title and headings
    ocr_confidence: float | None = None  # read by OCR: Tesseract's mean word confidence, 0-100


class Document(Model):
    id: str
    version: int = 0
    chunk_count: int = 0
    token_count: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    format: str | None = None
    title: str | None = None
    source: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] | None = None
    chunks: list[Chunk] | None = None


class DocumentPage(Model):
    documents: list[Document]
    total: int
    offset: int
    limit: int


# Jobs ---------------------------------------------------------------------------------------


class JobRef(Model):
    job_id: str
    document_id: str | None = None
    state: str = "queued"
    status_url: str = ""
    events_url: str = ""


class Accepted(Model):
    """What an ingest call answers (202): one job per document, file or URL."""

    collection: str
    jobs: list[JobRef]

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs]


class Job(Model):
    id: str
    kind: str = "ingest"
    collection: str = ""
    document_id: str | None = None
    state: JobState = "queued"
    stage: str = "queued"
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 0
    run: int = 1  # counts the retries asked for
    error: str | None = None
    error_stage: str | None = None
    result: dict[str, Any] | None = None
    source: str | None = None
    filename: str | None = None
    content_type: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_JOB_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


class JobPage(Model):
    jobs: list[Job]
    next_before: float | None = None


class JobEvent(Model):
    """One server-sent event of a job: ``event`` (progress, state...) and its fields."""

    event: str
    id: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def state(self) -> str | None:
        value = self.data.get("state")
        return str(value) if value is not None else None


# Search and answers -------------------------------------------------------------------------


class Scores(Model):
    dense: float | None = None
    lexical: float | None = None
    dense_rank: int | None = None
    lexical_rank: int | None = None


class SearchHit(Model):
    chunk_id: str
    document_id: str
    score: float
    text: str
    position: int = 0
    scores: Scores = msgspec.field(default_factory=Scores)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    source: str | None = None
    title: str | None = None
    page: int | None = None
    heading: str | None = None


class SearchResult(Model):
    collection: str
    query: str
    mode: str
    results: list[SearchHit]
    timings: dict[str, float] = msgspec.field(default_factory=dict)


class Source(Model):
    """A numbered passage an answer may cite as [number]."""

    number: int
    chunk_id: str
    document_id: str
    quote: str = ""
    title: str | None = None
    source: str | None = None
    page: int | None = None
    heading: str | None = None


class Usage(Model):
    input_tokens: int = 0
    output_tokens: int = 0


class Answer(Model):
    answer: str
    sources: list[Source] = msgspec.field(default_factory=list)
    cited: list[int] = msgspec.field(default_factory=list)
    generator: str = ""
    usage: Usage = msgspec.field(default_factory=Usage)
    cached: bool = False
    collection: str | None = None
    query: str | None = None
    fallback_from: list[str] | None = None
    rewrites: list[str] | None = None
    standalone_question: str | None = None
    session_id: str | None = None
    warnings: list[str] | None = None
    timings: dict[str, float] = msgspec.field(default_factory=dict)

    @property
    def citations(self) -> list[Source]:
        """The sources the answer cites, in the order of their numbers."""
        cited = set(self.cited)
        return [source for source in self.sources if source.number in cited]


class SourcesEvent(Model, tag="sources"):
    sources: list[Source]


class TokenEvent(Model, tag="token"):
    text: str


class DoneEvent(Model, tag="done"):
    """The end of a streamed answer: everything but the sources (sent first)."""

    answer: Answer


class ErrorEvent(Model, tag="error"):
    message: str
    retry: bool = False


AnswerEvent = SourcesEvent | TokenEvent | DoneEvent | ErrorEvent


# Keys and the system ------------------------------------------------------------------------


class ApiKey(Model):
    id: str
    tenant: str
    scopes: list[str]
    name: str = ""
    created_at: float = 0.0
    collections: list[str] | None = None
    requests_per_minute: int | None = None
    ingest_bytes_per_day: int | None = None
    revoked_at: float | None = None
    key: str | None = None  # the secret: only in the answer that created it


class ServiceState(Model):
    status: str
    version: str | None = None
    facts: dict[str, Any] = msgspec.field(default_factory=dict)


class QueueState(Model):
    depth: int
    workers: int


class SystemInfo(Model):
    """``get_system_info()``: each service's readiness and version, the embedder and other
    settings the services tell, and the ingest queue."""

    status: str
    tenant: str
    services: dict[str, ServiceState]
    queue: QueueState

    @property
    def embedding_model(self) -> str | None:
        ingest = self.services.get("ingest")
        value = ingest.facts.get("embedding_model") if ingest else None
        return str(value) if value is not None else None

    @property
    def max_file_bytes(self) -> int | None:
        """Ingest's MAX_FILE_BYTES: the largest file it takes (None if it does not tell)."""
        ingest = self.services.get("ingest")
        value = ingest.facts.get("max_file_bytes") if ingest else None
        return value if type(value) is int and value > 0 else None


__all__ = [
    "Accepted",
    "Answer",
    "AnswerEvent",
    "ApiKey",
    "Chunk",
    "Collection",
    "Document",
    "DocumentPage",
    "DoneEvent",
    "ErrorEvent",
    "Job",
    "JobEvent",
    "JobPage",
    "JobRef",
    "QueueState",
    "SearchHit",
    "SearchResult",
    "ServiceState",
    "Source",
    "SourcesEvent",
    "SystemInfo",
    "TokenEvent",
    "Usage",
    "convert",
]
