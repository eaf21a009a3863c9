"""Job records: what a user sees of every piece of ingest work."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from rag_core.quota import QuotaGrant

JobState = Literal["queued", "running", "succeeded", "failed", "dead"]
JobKind = Literal["ingest", "replace", "delete", "url", "reembed"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "dead")
FINAL_STATES = frozenset({"succeeded", "failed", "dead"})


class JobRecord(msgspec.Struct, kw_only=True):
    """One job as stored. What callers see of it is a ``JobView``: the record also holds
    internals (worker host and pid, Chroma id, content hashes, trace context)."""

    id: str
    kind: JobKind
    collection: str
    namespace: str = "default"
    document_id: str | None = None
    state: JobState = "queued"
    stage: str = "queued"
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 5
    run: int = 1
    sequence: int = 0
    error: str | None = None
    error_stage: str | None = None
    result: dict[str, Any] | None = None
    source: str | None = None
    title: str | None = None  # given with the document (else parsed from it)
    filename: str | None = None
    content_type: str | None = None
    metadata: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None
    worker: str | None = None
    request_id: str | None = None
    traceparent: str | None = None
    # Whose daily ingest bytes a URL job's fetched pages spend (from the gateway).
    quota: QuotaGrant | None = None

    @property
    def arq_job_id(self) -> str:
        """arq's id for the current run (a manual retry starts a new run)."""
        return f"{self.id}.{self.run}"


class JobView(msgspec.Struct, kw_only=True):
    """A job as ``GET /v1/jobs/{id}``, the job list and retry answer it."""

    id: str
    kind: JobKind
    collection: str
    document_id: str | None
    state: JobState
    stage: str
    progress: float
    attempts: int
    max_attempts: int
    run: int
    error: str | None
    error_stage: str | None
    result: dict[str, Any] | None
    source: str | None
    filename: str | None
    content_type: str | None
    metadata: dict[str, Any] | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None

    @classmethod
    def of(cls, record: JobRecord) -> JobView:
        return cls(**{name: getattr(record, name) for name in cls.__struct_fields__})
