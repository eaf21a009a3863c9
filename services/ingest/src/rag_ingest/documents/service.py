"""Documents in a collection: accepted as jobs (IngestService), and read or deleted
(DocumentService). Routes call these; these call the stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from rag_config import IngestSettings
from rag_core.catalog import DocumentRecord
from rag_core.chunks import ChunkStore, StoredChunk
from rag_core.errors import Conflict, InvalidInput, NotFound
from rag_core.quota import QuotaGrant

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.fetching.fetcher import FetchRefused, check_url_syntax
from rag_ingest.jobs.model import JobKind, JobRecord
from rag_ingest.jobs.store import JobStore
from rag_ingest.submissions import (
    JobSubmitter,
    Submission,
    check_length,
    check_metadata,
    new_job_id,
)
from rag_ingest.versions import DocumentStore


class IngestService:
    def __init__(
        self,
        *,
        settings: IngestSettings,
        registry: CollectionRegistry,
        documents: DocumentStore,
        jobs: JobStore,
        submitter: JobSubmitter,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.documents = documents
        self.jobs = jobs
        self.submitter = submitter

    async def submit(
        self,
        tenant: str,
        collection_name: str,
        items: Sequence[Submission],
        *,
        kind: JobKind = "ingest",
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> list[JobRecord]:
        """One job per document, each stored and queued (checked first: all or none)."""
        collection = await self.registry.get(tenant, collection_name)
        return await self.submitter.submit(
            collection, items, kind=kind, request_id=request_id, traceparent=traceparent
        )

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
    ) -> JobRecord:
        """One job that fetches ``url`` (and linked pages up to ``max_depth``) in the worker;
        with ``quota``, every page it fetches counts against that caller's daily bytes."""
        try:
            url = check_url_syntax(url)
        except FetchRefused as exc:
            raise InvalidInput.for_field("url", str(exc), detail=f"url: {exc}") from None
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
        await self.submitter.enqueue(record)
        return record

    async def retry(self, tenant: str, job_id: str) -> JobRecord:
        """Run a failed or dead-lettered job again, as a new run with fresh attempts."""
        record = await self.jobs.get(tenant, job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist (or has expired)")
        if record.state not in ("failed", "dead"):
            raise Conflict(
                f"job {job_id!r} is {record.state}; only failed or dead jobs are retried"
            )
        if record.kind not in ("url", "reembed") and await self.jobs.payload(job_id) is None:
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
        await self.submitter.enqueue(record)
        return record


@dataclass(frozen=True)
class Deleted:
    document_id: str
    version: int | None
    chunks: int


class DocumentService:
    """A collection's documents as they are now: their records, their active chunks."""

    def __init__(
        self,
        registry: CollectionRegistry,
        documents: DocumentStore,
        chunks: ChunkStore,
        arq: ArqRedis,
    ) -> None:
        self.registry = registry
        self.documents = documents
        self.chunks = chunks
        self.arq = arq

    async def page(
        self,
        tenant: str,
        collection: str,
        *,
        offset: int,
        limit: int,
        where: dict[str, Any] | None = None,
    ) -> tuple[list[DocumentRecord], int]:
        """One page of documents (by id), and how many there are in all; ``where`` is a
        validated filter on their metadata."""
        found = await self.registry.get(tenant, collection)
        if where is None:
            ids = await self.documents.page(tenant, collection, offset=offset, limit=limit)
            records = await self.documents.get_many(tenant, collection, ids)
            return records, found.document_count
        tags = await self.chunks.versions_matching(found.chroma_id, where)
        records = await self.documents.get_many(
            tenant, collection, sorted({doc for doc, _ in tags})
        )
        active = [r for r in records if (r.id, r.tag) in tags]
        return active[offset : offset + limit], len(active)

    async def get(
        self, tenant: str, collection: str, document_id: str, *, chunks: bool
    ) -> tuple[DocumentRecord, list[StoredChunk] | None]:
        """The document's record, and (with ``chunks``) its active version's chunks."""
        found = await self.registry.get(tenant, collection)
        record = await self.documents.get(tenant, collection, document_id)
        if record is None:
            raise NotFound(f"document {document_id!r} is not in collection {collection!r}")
        if not chunks:
            return record, None
        return record, await self.chunks.version(found.chroma_id, document_id, record.tag)

    async def delete(self, tenant: str, collection: str, document_id: str) -> Deleted:
        """Invisible at once; its chunks are removed from the store by the worker."""
        await self.registry.get(tenant, collection)  # 404 for a missing collection
        outcome = await self.documents.remove(tenant, collection, document_id)
        if outcome.status == "missing":
            raise NotFound(f"document {document_id!r} is not in collection {collection!r}")
        # Its chunks are listed for cleanup already; this only makes the worker do it now.
        await self.arq.enqueue_job("drain_cleanups")
        previous = outcome.previous
        return Deleted(
            document_id,
            previous.version if previous else None,
            previous.chunk_count if previous else 0,
        )
