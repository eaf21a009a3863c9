"""arq task functions. Every one is safe to run twice (at-least-once delivery)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from arq import Retry
from arq.constants import in_progress_key_prefix, job_key_prefix
from rag_core.embedding.base import EmbeddingError
from rag_core.errors import DependencyUnavailable
from rag_telemetry import bind_log_context, get_logger, reset_log_context
from redis.exceptions import RedisError

from rag_ingest.fetching.crawl import crawl
from rag_ingest.fetching.fetcher import FetchFailed, FetchRefused
from rag_ingest.jobs.model import FINAL_STATES, JobRecord
from rag_ingest.metrics import DEAD_LETTERED, JOB_DURATION, JOBS, QUEUE_DEPTH
from rag_ingest.worker.context import WorkerContext, worker_context
from rag_ingest.worker.pipeline import BadDocument

log = get_logger("rag.worker")

HEARTBEAT_TTL_SECONDS = 15
ORPHAN_GRACE_SECONDS = 5
LOST_ENQUEUE_SECONDS = 30
TRANSIENT_ERRORS = (DependencyUnavailable, RedisError, TimeoutError, ConnectionError, OSError)


def backoff_seconds(attempt: int) -> float:
    """1, 2, 4, 8... seconds, at most 60, with jitter so retries of many jobs spread out."""
    base: float = min(60.0, 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


async def ingest_document(ctx: dict[str, Any], job_id: str) -> str:
    w = worker_context(ctx)
    job = await w.jobs.get(job_id)
    if job is None:
        log.warning("job_record_missing", job_id=job_id)
        return "missing"
    if job.state in FINAL_STATES:
        return job.state  # delivered again after it finished: nothing to do
    tokens = bind_log_context(
        job_id=job.id,
        job_try=ctx["job_try"],
        document_id=job.document_id,
        collection=job.collection,
    )
    started = time.perf_counter()
    try:
        return await _run_ingest(w, job, attempt=int(ctx["job_try"]))
    finally:
        JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)
        reset_log_context(tokens)


async def _run_ingest(w: WorkerContext, job: JobRecord, *, attempt: int) -> str:
    if attempt > job.max_attempts:
        # arq delivered it once more after the last allowed attempt (e.g. the worker died
        # during that attempt): dead-letter it with the last reason we know.
        return await _dead_letter(w, job, job.error or "the worker stopped during the last attempt")
    previous = job.state
    job.state, job.attempts, job.worker = "running", attempt, w.worker_id
    job.next_attempt_at = None
    job.started_at = job.started_at or time.time()
    await w.jobs.save(job, previous_state=previous)
    await w.jobs.add_event(job, "started")
    log.info("job_started", kind=job.kind)

    async def progress(stage: str, fraction: float) -> None:
        job.stage, job.progress = stage, round(fraction, 3)
        await w.jobs.save(job)
        await w.jobs.add_event(job, "progress")

    try:
        collection = await w.registry.find(job.collection)
        if collection is None:
            raise BadDocument("queued", f"collection {job.collection!r} was deleted")
        if job.kind == "url":
            await progress("fetching", 0.1)
            try:
                result = await crawl(job, w.settings, w.ingest)
            except FetchRefused as exc:
                raise BadDocument("fetching", str(exc)) from None
            return await _succeed(w, job, result)
        payload = await w.jobs.payload(job.id)
        if payload is None:
            raise BadDocument("queued", "the document's content is no longer stored")
        options = job.options or {}
        result = await w.pipeline.run(
            job=job,
            collection=collection,
            payload=payload,
            digest=str(options["content_hash"]),
            version=str(options["version_hash"]),
            progress=progress,
        )
    except BadDocument as exc:
        return await _fail(w, job, exc.stage, str(exc))
    except asyncio.CancelledError:
        # Shutdown or timeout: arq re-queues it; say so instead of claiming to be running.
        job.state, job.stage = "queued", "interrupted"
        await asyncio.shield(w.jobs.save(job, previous_state="running"))
        raise
    except (*TRANSIENT_ERRORS, EmbeddingError, FetchFailed) as exc:
        if isinstance(exc, EmbeddingError) and not exc.transient:
            return await _fail(w, job, job.stage, str(exc))
        return await _retry_or_dead_letter(w, job, f"{type(exc).__name__}: {exc}", attempt)
    except Exception as exc:  # a bug: keep retrying (it may be data-dependent), then dead-letter
        log.exception("job_crashed")
        return await _retry_or_dead_letter(
            w, job, f"internal error ({type(exc).__name__}: {exc})", attempt
        )
    return await _succeed(w, job, result)


async def _succeed(w: WorkerContext, job: JobRecord, result: dict[str, Any]) -> str:
    job.state, job.stage, job.progress = "succeeded", "done", 1.0
    job.result, job.error, job.error_stage = result, None, None
    job.finished_at = time.time()
    await w.jobs.save(job, previous_state="running")
    await w.jobs.add_event(job, "succeeded", status=result.get("status", ""))
    JOBS.labels(job.kind, "succeeded").inc()
    previous_tag = result.get("previous_version_tag")
    if previous_tag:
        # The old version stays readable for a grace period, then its chunks go.
        await w.arq.enqueue_job(
            "cleanup_version",
            job.collection,
            job.document_id,
            previous_tag,
            _job_id=f"cleanup.{job.collection}.{job.document_id}.{previous_tag}",
            _defer_by=w.settings.version_grace_seconds,
        )
    log.info(
        "job_succeeded",
        status=result.get("status"),
        chunks=result.get("chunks_created"),
        timings=result.get("timings"),
    )
    return "succeeded"


async def _fail(w: WorkerContext, job: JobRecord, stage: str, reason: str) -> str:
    job.state, job.error, job.error_stage = "failed", reason, stage
    job.finished_at = time.time()
    await w.jobs.save(job, previous_state="running")
    await w.jobs.add_event(job, "failed")
    JOBS.labels(job.kind, "failed").inc()
    log.warning("job_failed", stage=stage, reason=reason)
    return "failed"


async def _dead_letter(w: WorkerContext, job: JobRecord, reason: str) -> str:
    previous = job.state
    job.state, job.error = "dead", reason
    job.error_stage = job.error_stage or job.stage
    job.finished_at = time.time()
    await w.jobs.save(job, previous_state=previous)
    await w.jobs.add_event(job, "dead")
    JOBS.labels(job.kind, "dead").inc()
    log.error("job_dead_lettered", reason=reason, attempts=job.attempts)
    return "dead"


async def _retry_or_dead_letter(w: WorkerContext, job: JobRecord, reason: str, attempt: int) -> str:
    job.error, job.error_stage = reason, job.stage
    if attempt >= job.max_attempts:
        return await _dead_letter(w, job, reason)
    delay = backoff_seconds(attempt)
    job.state, job.next_attempt_at = "queued", time.time() + delay
    await w.jobs.save(job, previous_state="running")
    await w.jobs.add_event(job, "retrying", retry_in=f"{delay:.1f}")
    JOBS.labels(job.kind, "retried").inc()
    log.warning("job_retrying", reason=reason, retry_in=round(delay, 1))
    raise Retry(defer=delay)


async def cleanup_version(
    ctx: dict[str, Any], collection: str, document_id: str, stale_tag: str
) -> int:
    """Delete a superseded version's chunks, unless that version became active again."""
    w = worker_context(ctx)
    found = await w.registry.find(collection)
    if found is None:
        return 0
    current = await w.documents.get(collection, document_id)
    if current is not None and current.version_tag == stale_tag:
        return 0
    return await w.chroma.delete(
        found.chroma_id, where={"$and": [{"_doc": document_id}, {"_ver": stale_tag}]}
    )


async def delete_document_chunks(ctx: dict[str, Any], collection: str, document_id: str) -> int:
    """Chunks of a deleted document (its record is already gone, so no one reads them)."""
    w = worker_context(ctx)
    found = await w.registry.find(collection)
    if found is None:
        return 0
    if await w.documents.get(collection, document_id) is not None:
        return 0  # re-created since: its chunks are live again
    return await w.chroma.delete(found.chroma_id, where={"_doc": document_id})


async def heartbeat(w: WorkerContext) -> None:
    await w.redis.set(w.keys.worker_heartbeat(w.worker_id), "1", ex=HEARTBEAT_TTL_SECONDS)


async def reconcile(ctx: dict[str, Any]) -> dict[str, int]:
    """Keep every job moving: free jobs whose worker died, re-enqueue jobs whose enqueue was
    lost, expire old index entries, and refresh the queue gauges."""
    w = worker_context(ctx)
    freed = requeued = 0
    now = time.time()
    for job in await w.jobs.find(state="running", limit=1000):
        if job.worker == w.worker_id or now - job.updated_at < ORPHAN_GRACE_SECONDS:
            continue
        if job.worker and await w.redis.exists(w.keys.worker_heartbeat(job.worker)):
            continue
        # Its worker is gone: let arq hand the job to a live worker right away instead of
        # waiting for the in-progress marker to time out.
        await w.redis.delete(in_progress_key_prefix + job.arq_job_id)
        job.state, job.stage = "queued", "requeued after its worker stopped"
        await w.jobs.save(job, previous_state="running")
        await w.jobs.add_event(job, "requeued")
        freed += 1
    for job in await w.jobs.find(state="queued", limit=1000):
        if now - job.updated_at < LOST_ENQUEUE_SECONDS:
            continue
        if job.next_attempt_at and job.next_attempt_at > now:
            continue
        if await w.redis.exists(job_key_prefix + job.arq_job_id):
            continue
        await w.arq.enqueue_job("ingest_document", job.id, _job_id=job.arq_job_id)
        requeued += 1
    cutoff = now - w.jobs.retention_seconds
    async with w.redis.pipeline(transaction=False) as pipe:
        for key in await _index_keys(w):
            pipe.zremrangebyscore(key, "-inf", cutoff)
        await pipe.execute()
    QUEUE_DEPTH.set(await w.redis.zcard(w.keys.queue()))
    DEAD_LETTERED.set(await w.redis.zcard(w.keys.jobs_by_state("dead")))
    if freed or requeued:
        log.warning("reconciled", freed=freed, requeued=requeued)
    return {"freed": freed, "requeued": requeued}


async def _index_keys(w: WorkerContext) -> list[str]:
    finished = ("succeeded", "failed", "dead")
    keys = [w.keys.jobs_all()] + [w.keys.jobs_by_state(s) for s in finished]
    for collection in await w.registry.all():
        keys.append(w.keys.jobs_by_collection(collection.name))
        keys += [w.keys.jobs_by_collection_state(collection.name, s) for s in finished]
    return keys
