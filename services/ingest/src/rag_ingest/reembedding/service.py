"""Starting and cancelling a re-embedding (the API's side; the worker's is migration.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rag_config import IngestSettings
from rag_core.catalog import Collection
from rag_core.chunks import ChunkStore, CollectionMissing
from rag_core.embedding.models import ModelSpec
from rag_core.errors import Conflict, NotFound

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.jobs.model import FINAL_STATES, JobRecord
from rag_ingest.jobs.store import JobStore
from rag_ingest.reembedding.store import MigrationStore
from rag_ingest.submissions import JobSubmitter, new_job_id

START_TRIES = 5  # a start raced by another start or end is looked at again this many times


class ReembedService:
    def __init__(
        self,
        *,
        settings: IngestSettings,
        registry: CollectionRegistry,
        migrations: MigrationStore,
        jobs: JobStore,
        submitter: JobSubmitter,
        check_model: Callable[[str], ModelSpec],
        chunks: ChunkStore,
    ) -> None:
        self.settings = settings
        self.chunks = chunks
        self.registry = registry
        self.migrations = migrations
        self.jobs = jobs
        self.submitter = submitter
        self.check_model = check_model

    async def start(
        self,
        tenant: str,
        name: str,
        model: str,
        *,
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> JobRecord:
        """Queue a re-embedding of collection ``name`` with ``model``. A stopped one (failed,
        dead-lettered) is replaced; its shadow is resumed if it is for the same model. The
        collection's own model is taken only while it holds vectors of another revision of it
        (weights changed under the same name: all-MiniLM-L6-v2-int8's 8-bit ones), which the
        re-embedding then replaces; else 409."""
        for _ in range(START_TRIES):
            collection = await self.registry.get(tenant, name)
            spec = self.check_model(model)
            running = collection.migration
            replacing = ""
            if running is not None:
                job = await self.jobs.get(tenant, running.job_id)
                if job is not None and job.state not in FINAL_STATES:
                    raise Conflict(
                        f"collection {name!r} is being re-embedded with {running.model!r} "
                        f"already (job {running.job_id}); follow it, or cancel it with "
                        f"DELETE /v1/collections/{name}/reembed",
                        extra={"job_id": running.job_id},
                    )
                replacing = running.job_id
            if model == collection.embedding_model and not (
                (running is not None and running.model == model)  # a stopped one: resumed
                or await self._holds_other_revision(collection, spec)
            ):
                weights = f", every vector of its current weights ({spec.revision})"
                raise Conflict.for_field(
                    "embedding_model",
                    "already the collection's model",
                    detail=f"collection {name!r} already uses {model!r}"
                    + (weights if spec.revision else ""),
                )
            record = JobRecord(
                id=new_job_id(),
                kind="reembed",
                collection=name,
                namespace=tenant,
                max_attempts=self.settings.job_max_tries,
                options={
                    "embedding_model": model,
                    "previous_model": collection.embedding_model,
                    "chroma_id": collection.chroma_id,
                },
                request_id=request_id,
                traceparent=traceparent,
            )
            # The job is stored before the collection names it: a concurrent start then sees
            # a job still queued (409), never a migration without one that it may replace.
            await self.jobs.create(record)
            outcome = await self.migrations.start(
                tenant,
                name,
                chroma_id=collection.chroma_id,
                replacing=replacing,
                job_id=record.id,
                model=model,
                dimension=spec.dimension,
            )
            if outcome == "started":
                await self.submitter.enqueue(record)
                return record
            await self._end(record, "another request changed the collection meanwhile")
            if outcome == "gone":
                break
        raise Conflict(
            f"collection {name!r} changed while the re-embedding was being started; try again"
        )

    async def _holds_other_revision(self, collection: Collection, spec: ModelSpec) -> bool:
        """Whether some of the collection's vectors are of another revision of its model
        (never for a model without revisions). NotFound if the collection was deleted."""
        if not spec.revision:
            return False
        try:
            return await self.chunks.holds_other_revision(collection.chroma_id, spec.revision)
        except CollectionMissing:  # deleted meanwhile (or re-embedded: then it is not)
            await self.registry.get(collection.namespace, collection.name)
            return True

    async def _end(self, record: JobRecord, reason: str) -> None:
        record.state, record.stage, record.error = "failed", "queued", reason
        record.error_stage, record.finished_at = "queued", time.time()
        await self.jobs.save(record, expect_states=("queued",), event="failed")

    async def cancel(self, tenant: str, name: str) -> JobRecord:
        """Stop the collection's re-embedding and drop its shadow; the collection keeps its
        model. The job, now failed as cancelled."""
        await self.registry.get(tenant, name)
        job_id = await self.migrations.cancel(tenant, name)
        if job_id is None:
            raise NotFound(f"collection {name!r} has no re-embedding to cancel")
        job = await self.jobs.get(tenant, job_id)
        if job is None:  # kept JOB_RETENTION_DAYS: it stood unfinished longer than that
            return JobRecord(
                id=job_id,
                kind="reembed",
                collection=name,
                namespace=tenant,
                state="failed",
                stage="cancelled",
                error="cancelled (its job record had expired)",
                error_stage="cancelled",
                finished_at=time.time(),
            )
        while job.state not in FINAL_STATES:
            job.state, job.stage = "failed", "cancelled"
            job.error = f"cancelled (DELETE /v1/collections/{name}/reembed)"
            job.error_stage = "cancelled"
            job.finished_at = time.time()
            if await self.jobs.save(job, expect_states=("queued", "running"), event="cancelled"):
                break
            fresh = await self.jobs.get(tenant, job_id)  # it moved on meanwhile: look again
            if fresh is None:
                break
            job = fresh
        return job
