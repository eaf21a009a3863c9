"""Accepting documents: validate, store the bytes and a job record, then enqueue.

A job is enqueued only after its record and its bytes are stored; if the enqueue itself is
lost (Redis failover, crash), the reconciler re-enqueues any queued job arq does not know.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from arq.connections import ArqRedis
from rag_config import IngestSettings
from rag_core.catalog import Collection, Keys
from rag_core.errors import Conflict, InvalidInput, PayloadTooLarge
from rag_core.quota import QuotaGrant
from redis.asyncio import Redis

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.documents.store import DocumentStore, content_hash, derived_id, version_hash
from rag_ingest.jobs.model import JobKind, JobRecord
from rag_ingest.jobs.store import JobStore

DOCUMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,255}$")
DOCUMENT_ID_RULE = (
    "1-256 characters: letters, digits and . _ : @ -, starting with a letter or digit"
)
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass
class Submission:
    """One document to ingest, already read into memory."""

    payload: bytes
    where: str  # where it came from in the request, for error messages
    document_id: str | None = None
    filename: str | None = None
    content_type: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Accepted:
    record: JobRecord

    def to_wire(self) -> dict[str, Any]:
        return {
            "job_id": self.record.id,
            "document_id": self.record.document_id,
            "state": self.record.state,
            "status_url": f"/v1/jobs/{self.record.id}",
            "events_url": f"/v1/jobs/{self.record.id}/events",
        }


def new_job_id() -> str:
    # Time-ordered (sortable in listings), unique without coordination.
    return f"{int(time.time() * 1000):013x}{uuid.uuid4().hex[:12]}"


INT64 = (-(2**63), 2**63 - 1)
METADATA_KEY_RULE = (
    "metadata keys are 1-128 characters and may not start with '_', '$' or '#' "
    "or with 'chroma:' (reserved by the store)"
)


def check_metadata(metadata: dict[str, Any], where: str, limit: int) -> None:
    """Only what the chunk store keeps as given: refused here (422 naming the key), never
    accepted and then failed (or silently changed) by Chroma in the worker."""
    for key, value in metadata.items():
        if not key or len(key) > 128 or key[0] in "_$#" or key.lower().startswith("chroma:"):
            raise InvalidInput(
                f"{where}.{key}: {METADATA_KEY_RULE}",
                extra={
                    "errors": [{"field": f"{where}.{key}", "message": "reserved or invalid key"}]
                },
            )
        whole = isinstance(value, int) and not isinstance(value, bool)
        if whole and not INT64[0] <= value <= INT64[1]:
            raise InvalidInput.for_field(
                f"{where}.{key}",
                "integer too large",
                detail=f"{where}.{key}: integers must fit in 64 bits (send larger ones as text)",
            )
    size = len(msgspec.json.encode(metadata))
    if size > limit:
        raise PayloadTooLarge(
            f"{where} is {size} bytes as JSON; the limit is {limit} (MAX_METADATA_BYTES)",
            extra={"limit": "MAX_METADATA_BYTES", "max_bytes": limit},
        )


def check_length(value: str | None, field: str, limit: int, setting: str) -> None:
    """A free-text field within its limit (422 naming the field and the setting)."""
    if value is not None and len(value) > limit:
        raise InvalidInput(
            f"{field} is {len(value)} characters; the limit is {limit} ({setting})",
            extra={
                "errors": [{"field": field, "message": f"longer than {limit} characters"}],
                "limit": setting,
            },
        )


class IngestService:
    def __init__(
        self,
        *,
        settings: IngestSettings,
        redis: Redis,
        arq: ArqRedis,
        registry: CollectionRegistry,
        documents: DocumentStore,
        jobs: JobStore,
        keys: Keys,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.arq = arq
        self.registry = registry
        self.documents = documents
        self.jobs = jobs
        self.keys = keys

    def check_batch_size(self, count: int) -> None:
        limit = self.settings.max_documents_per_batch
        if count > limit:
            raise PayloadTooLarge(
                f"{count} documents in one request; the limit is {limit} (MAX_DOCUMENTS_PER_BATCH)",
                extra={"limit": "MAX_DOCUMENTS_PER_BATCH", "max_documents": limit},
            )
        if count == 0:
            raise InvalidInput.for_field("documents", "empty", detail="no documents in the request")

    def validate(self, items: list[Submission]) -> None:
        """Everything checkable before anything is written: nothing is half-accepted."""
        self.check_batch_size(len(items))
        seen: dict[str, str] = {}
        for item in items:
            check_length(
                item.filename,
                f"{item.where}.filename",
                self.settings.max_filename_chars,
                "MAX_FILENAME_CHARS",
            )
            check_length(
                item.source,
                f"{item.where}.source",
                self.settings.max_source_chars,
                "MAX_SOURCE_CHARS",
            )
            if not item.payload or item.payload.isspace():
                raise InvalidInput.for_field(item.where, "empty", detail=f"{item.where} is empty")
            if len(item.payload) > self.settings.max_file_bytes:
                raise PayloadTooLarge(
                    f"{item.where} is {len(item.payload)} bytes; the limit is "
                    f"{self.settings.max_file_bytes} (MAX_FILE_BYTES)",
                    extra={"limit": "MAX_FILE_BYTES", "max_bytes": self.settings.max_file_bytes},
                )
            if item.document_id is not None and not DOCUMENT_ID.match(item.document_id):
                raise InvalidInput.for_field(
                    f"{item.where}.id",
                    DOCUMENT_ID_RULE,
                    detail=f"{item.where}: document id {item.document_id!r} is not allowed: "
                    f"{DOCUMENT_ID_RULE}",
                )
            check_metadata(
                item.metadata, f"{item.where}.metadata", self.settings.max_metadata_bytes
            )
            doc_id = item.document_id or self.derived_id(item.payload)
            if doc_id in seen:
                raise InvalidInput.for_field(
                    item.where,
                    "duplicate document",
                    detail=f"{item.where} and {seen[doc_id]} are the same document ({doc_id!r})",
                )
            seen[doc_id] = item.where

    @staticmethod
    def derived_id(payload: bytes) -> str:
        return derived_id(payload)

    async def submit(
        self,
        tenant: str,
        collection_name: str,
        items: list[Submission],
        *,
        kind: JobKind = "ingest",
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> list[Accepted]:
        collection = await self.registry.get(tenant, collection_name)
        self.validate(items)
        accepted = [
            await self._store_job(collection, item, kind, request_id, traceparent) for item in items
        ]
        for entry in accepted:
            await self.arq.enqueue_job(
                "ingest_document", entry.record.id, _job_id=entry.record.arq_job_id
            )
        return accepted

    async def _store_job(
        self,
        collection: Collection,
        item: Submission,
        kind: JobKind,
        request_id: str | None,
        traceparent: str | None,
    ) -> Accepted:
        doc_id = item.document_id or self.derived_id(item.payload)
        digest = content_hash(item.payload)
        # The file name is not part of a version: the same bytes under another name are the
        # same document ("unchanged"), as are the same bytes with a different content type.
        version = version_hash(
            digest,
            metadata=item.metadata,
            source=item.source,
            model=collection.embedding_model,
            chunk_size=self.settings.chunk_size_tokens,
            chunk_overlap=self.settings.chunk_overlap_tokens,
        )
        record = JobRecord(
            id=new_job_id(),
            kind=kind,
            collection=collection.name,
            namespace=collection.namespace,
            document_id=doc_id,
            max_attempts=self.settings.job_max_tries,
            sequence=await self.documents.next_sequence(
                collection.namespace, collection.name, doc_id
            ),
            source=item.source,
            filename=item.filename,
            content_type=item.content_type,
            metadata=item.metadata or None,
            options={
                "content_hash": digest,
                "version_hash": version,
                "bytes": len(item.payload),
                "chroma_id": collection.chroma_id,
            },
            request_id=request_id,
            traceparent=traceparent,
        )
        await self.jobs.create(record, item.payload)
        return Accepted(record)

    async def submit_url(
        self,
        tenant: str,
        collection_name: str,
        url: str,
        *,
        max_depth: int,
        same_domain: bool,
        metadata: dict[str, Any],
        request_id: str | None,
        traceparent: str | None,
        quota: QuotaGrant | None = None,
    ) -> Accepted:
        """One job that fetches ``url`` (and linked pages up to ``max_depth``) in the worker;
        with ``quota``, every page it fetches counts against that caller's daily bytes."""
        collection = await self.registry.get(tenant, collection_name)
        check_length(url, "url", self.settings.max_source_chars, "MAX_SOURCE_CHARS")
        check_metadata(metadata, "metadata", self.settings.max_metadata_bytes)
        record = JobRecord(
            id=new_job_id(),
            kind="url",
            collection=collection.name,
            namespace=collection.namespace,
            max_attempts=self.settings.job_max_tries,
            source=url,
            metadata=metadata or None,
            options={
                "url": url,
                "max_depth": max_depth,
                "same_domain": same_domain,
                "chroma_id": collection.chroma_id,
            },
            request_id=request_id,
            traceparent=traceparent,
            quota=quota,
        )
        await self.jobs.create(record)
        await self.arq.enqueue_job("ingest_document", record.id, _job_id=record.arq_job_id)
        return Accepted(record)

    async def retry(self, tenant: str, job_id: str) -> JobRecord:
        """Run a failed or dead-lettered job again, as a new run with fresh attempts."""
        record = await self.jobs.get(tenant, job_id)
        if record is None:
            from rag_core.errors import NotFound  # noqa: PLC0415

            raise NotFound(f"job {job_id!r} does not exist (or has expired)")
        if record.state not in ("failed", "dead"):
            raise Conflict(
                f"job {job_id!r} is {record.state}; only failed or dead jobs are retried"
            )
        if record.kind != "url" and await self.jobs.payload(job_id) is None:
            raise Conflict(f"job {job_id!r} can no longer be retried: its content has expired")
        if record.document_id and record.kind != "url":
            latest = await self.documents.latest_sequence(
                tenant, record.collection, record.document_id
            )
            if latest > record.sequence:
                # Running it again would bring its (older) content back over the newer one.
                raise Conflict(
                    f"document {record.document_id!r} has changed since job {job_id!r} was "
                    "made; send the document again to ingest that content now"
                )
        record.run += 1
        record.state, record.stage, record.progress = "queued", "queued", 0.0
        record.attempts, record.error, record.error_stage = 0, None, None
        record.finished_at = record.started_at = None
        record.sequence = await self.documents.next_sequence(
            tenant, record.collection, record.document_id or ""
        )
        if not await self.jobs.save(
            record, expect_states=("failed", "dead"), expect_run=record.run - 1, event="retried"
        ):
            raise Conflict(f"job {job_id!r} changed meanwhile (retried already?); look again")
        await self.arq.enqueue_job("ingest_document", record.id, _job_id=record.arq_job_id)
        return record


class IdempotencyGuard:
    """Same Idempotency-Key and same request: the first response again. Same key, different
    request: 409. Remembered for IDEMPOTENCY_TTL_HOURS."""

    def __init__(self, redis: Redis, keys: Keys, ttl_hours: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl_hours * 3600

    @staticmethod
    def check_key(key: str) -> None:
        if not IDEMPOTENCY_KEY.match(key):
            raise InvalidInput.for_field(
                "Idempotency-Key",
                "invalid",
                detail="Idempotency-Key must be 1-255 visible ASCII characters",
            )

    async def begin(self, tenant: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """None: go ahead (the key is now reserved). A dict: the stored response to replay."""
        self.check_key(key)
        redis_key = self.keys.idempotency(tenant, key)
        reserved = {"fingerprint": fingerprint, "state": "pending"}
        # A short reservation: a request that dies half-way frees its key within a minute.
        if await self.redis.set(redis_key, msgspec.json.encode(reserved), nx=True, ex=60):
            return None
        raw = await self.redis.get(redis_key)
        stored: dict[str, Any] = msgspec.json.decode(raw) if raw else {}
        if stored.get("fingerprint") != fingerprint:
            raise Conflict("this Idempotency-Key was used for a different request")
        if stored.get("state") != "done":
            raise Conflict("a request with this Idempotency-Key is still being processed")
        return stored

    async def finish(self, tenant: str, key: str, fingerprint: str, status: int, body: Any) -> None:
        done = {"fingerprint": fingerprint, "state": "done", "status": status, "body": body}
        redis_key = self.keys.idempotency(tenant, key)
        await self.redis.set(redis_key, msgspec.json.encode(done), ex=self.ttl)

    async def abandon(self, tenant: str, key: str) -> None:
        await self.redis.delete(self.keys.idempotency(tenant, key))
