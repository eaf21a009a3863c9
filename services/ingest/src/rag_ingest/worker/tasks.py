"""arq task functions. Every one is safe to run twice (at-least-once delivery).

Every write to a job record is fenced (jobs/store.py): a worker writes only while the stored
record still says the job is running on it, so a worker that was taken for dead, or a job
retried meanwhile, can never revert what another one wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from arq import Retry
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from rag_config import IngestSettings
from rag_core.embedding.base import EmbeddingError
from rag_core.errors import DependencyUnavailable
from rag_core.quota import DailyIngestBytes
from rag_telemetry import bind_log_context, continue_trace, get_logger, reset_log_context
from redis.exceptions import RedisError

from rag_ingest.fetching.crawl import crawl
from rag_ingest.fetching.fetcher import FetchFailed, FetchRefused
from rag_ingest.jobs.model import FINAL_STATES, JobRecord
from rag_ingest.metrics import (
    CLEANED_CHUNKS,
    DEAD_LETTERED,
    DROPPED_COLLECTIONS,
    JOB_DURATION,
    JOBS,
    QUEUE_DEPTH,
)
from rag_ingest.reembedding.store import drop_check_seconds
from rag_ingest.submissions import task_of
from rag_ingest.versions import Cleanup
from rag_ingest.worker.context import WorkerContext, worker_context
from rag_ingest.worker.pipeline import BadDocument

log = get_logger("rag.worker")

ORPHAN_GRACE_SECONDS = 5
# A running job's record is written at least at every stage; an attempt ends after
# JOB_TIMEOUT_SECONDS. One silent for longer (plus this margin) is run by nobody, even if its
# worker lives: its last write failed (Redis blinked as it saved the result).
STALLED_MARGIN_SECONDS = 60
FINAL_SAVE_TRIES = 5
LOST_ENQUEUE_SECONDS = 30
CLEANUPS_PER_ROUND = 200
TRANSIENT_ERRORS = (DependencyUnavailable, RedisError, TimeoutError, ConnectionError, OSError)


class JobLost(Exception):
    """The job's record no longer says it runs here (reconciled, retried): stop quietly."""


class AttemptTimedOut(Exception):
    """The attempt ran longer than JOB_TIMEOUT_SECONDS."""


def backoff_seconds(attempt: int) -> float:
    """1, 2, 4, 8... seconds, at most 60, with jitter so retries of many jobs spread out."""
    base: float = min(60.0, 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


def transient_reason(exc: BaseException) -> str:
    """What the job shows for a failure worth retrying: the cause, without internals
    (addresses, response bodies), which go to the log."""
    if isinstance(exc, DependencyUnavailable | EmbeddingError | FetchFailed | AttemptTimedOut):
        return str(exc)
    if isinstance(exc, RedisError):
        return "Redis was unavailable"
    if isinstance(exc, TimeoutError):
        return "a call to a backing service timed out"
    return f"a connection failed ({type(exc).__name__})"


async def ingest_document(ctx: dict[str, Any], job_id: str) -> str:
    return await run_job(ctx, job_id)


async def reembed_collection(ctx: dict[str, Any], job_id: str) -> str:
    """A re-embedding (reembedding/migration.py): a job like the others, with a timeout of its
    own (REEMBED_TIMEOUT_SECONDS)."""
    return await run_job(ctx, job_id)


async def run_job(ctx: dict[str, Any], job_id: str) -> str:
    w = worker_context(ctx)
    job = await w.jobs.get(None, job_id)  # the worker serves every tenant's jobs
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
        request_id=job.request_id,
    )
    started = time.perf_counter()
    try:
        # The request that queued the job started a trace; the job's work joins it.
        with continue_trace(
            f"ingest {job.kind}",
            job.traceparent,
            **{"rag.job_id": job.id, "rag.collection": job.collection},
        ):
            return await _run_ingest(w, job)
    except JobLost:
        log.warning("job_taken_over", detail="its record moved on; this run stops")
        return "lost"
    finally:
        JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)
        reset_log_context(tokens)


async def _save_or_lose(w: WorkerContext, job: JobRecord, event: str, **data: Any) -> None:
    """Write the job as the worker running it; JobLost if it no longer is."""
    if not await w.jobs.save(
        job, expect_states=("running",), expect_worker=w.worker_id, event=event, **data
    ):
        raise JobLost


async def _save_final(w: WorkerContext, job: JobRecord, event: str, **data: Any) -> None:
    """The job's verdict: worth a few tries through a short Redis outage (the work is done);
    if it still cannot be written, the reconciler finds the job stalled and runs it again."""
    for attempt in range(FINAL_SAVE_TRIES):
        try:
            await _save_or_lose(w, job, event, **data)
            return
        except RedisError as exc:
            if attempt + 1 == FINAL_SAVE_TRIES:
                raise
            log.warning("final_save_retry", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.2 * 2**attempt)


async def _run_ingest(w: WorkerContext, job: JobRecord) -> str:
    # Attempts are counted here, not by arq: arq's count restarts when a lost job is enqueued
    # again, and a worker killed mid-attempt must still use up that attempt.
    attempt = job.attempts + 1
    if attempt > job.max_attempts:
        # The last allowed attempt ended without a verdict (its worker died): give up.
        reason = job.error or "the worker stopped during the last attempt"
        return await _dead_letter(w, job, reason, expect=("queued", "running"))
    job.state, job.attempts, job.worker = "running", attempt, w.worker_id
    job.next_attempt_at = None
    job.started_at = job.started_at or time.time()
    if not await w.jobs.save(job, expect_states=("queued", "running"), event="started"):
        raise JobLost
    log.info("job_started", kind=job.kind, attempt=attempt)

    async def progress(stage: str, fraction: float, **data: Any) -> None:
        job.stage, job.progress = stage, round(fraction, 3)
        await _save_or_lose(w, job, "progress", **data)

    limit = attempt_timeout(w.settings, job)
    try:
        try:
            async with asyncio.timeout(limit) as deadline:
                result = await _attempt(w, job, progress)
        except TimeoutError:
            if not deadline.expired():
                raise
            setting = "REEMBED_TIMEOUT_SECONDS" if job.kind == "reembed" else "JOB_TIMEOUT_SECONDS"
            raise AttemptTimedOut(f"the attempt took longer than {limit} s ({setting})") from None
    except BadDocument as exc:
        return await _fail(w, job, exc.stage, str(exc))
    except asyncio.CancelledError:
        # Shutdown: arq re-queues it; say so instead of claiming to be running.
        job.state, job.stage = "queued", "interrupted"
        await asyncio.shield(
            w.jobs.save(job, expect_states=("running",), expect_worker=w.worker_id)
        )
        raise
    except JobLost:
        raise
    except EmbeddingError as exc:
        if not exc.transient:
            return await _fail(w, job, job.stage, str(exc))
        return await _retry_or_dead_letter(w, job, exc)
    except (*TRANSIENT_ERRORS, FetchFailed, AttemptTimedOut) as exc:
        log.warning("job_attempt_failed", error=f"{type(exc).__name__}: {exc}")
        return await _retry_or_dead_letter(w, job, exc)
    except Exception as exc:  # a bug: keep retrying (it may be data-dependent), then dead-letter
        log.exception("job_crashed")
        return await _retry_or_dead_letter(
            w, job, exc, reason=f"internal error ({type(exc).__name__})"
        )
    return await _succeed(w, job, result)


async def _attempt(w: WorkerContext, job: JobRecord, progress: Any) -> dict[str, Any]:
    collection = await w.registry.find(job.namespace, job.collection)
    expected = (job.options or {}).get("chroma_id")
    if collection is None or (expected and not collection.owns(expected)):
        raise BadDocument("queued", f"collection {job.collection!r} was deleted")
    if job.kind == "reembed":
        return await w.reembedder.run(job, collection, progress)
    if job.kind == "url":
        await progress("fetching", 0.1)
        try:
            counter = DailyIngestBytes(w.redis, w.keys)
            return await crawl(
                job, collection, w.settings, w.submitter, counter, w.pipeline.parsers
            )
        except FetchRefused as exc:
            raise BadDocument("fetching", str(exc)) from None
    payload = await w.jobs.payload(job.id)
    if payload is None:
        raise BadDocument("queued", "the document's content is no longer stored")
    return await w.pipeline.run(job=job, collection=collection, payload=payload, progress=progress)


async def _succeed(w: WorkerContext, job: JobRecord, result: dict[str, Any]) -> str:
    job.state, job.stage, job.progress = "succeeded", "done", 1.0
    job.result, job.error, job.error_stage = result, None, None
    job.finished_at = time.time()
    await _save_final(w, job, "succeeded", status=result.get("status", ""))
    JOBS.labels(job.kind, "succeeded").inc()
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
    await _save_final(w, job, "failed")
    JOBS.labels(job.kind, "failed").inc()
    log.warning("job_failed", stage=stage, reason=reason)
    return "failed"


async def _dead_letter(
    w: WorkerContext, job: JobRecord, reason: str, *, expect: tuple[Any, ...] = ("running",)
) -> str:
    job.state, job.error = "dead", reason
    job.error_stage = job.error_stage or job.stage
    job.finished_at = time.time()
    worker = w.worker_id if expect == ("running",) else None
    if not await w.jobs.save(job, expect_states=expect, expect_worker=worker, event="dead"):
        raise JobLost
    JOBS.labels(job.kind, "dead").inc()
    log.error("job_dead_lettered", reason=reason, attempts=job.attempts)
    return "dead"


async def _retry_or_dead_letter(
    w: WorkerContext, job: JobRecord, exc: BaseException, *, reason: str | None = None
) -> str:
    job.error, job.error_stage = reason or transient_reason(exc), job.stage
    if job.attempts >= job.max_attempts:
        return await _dead_letter(w, job, job.error)
    delay = backoff_seconds(job.attempts)
    job.state, job.next_attempt_at = "queued", time.time() + delay
    await _save_or_lose(w, job, "retrying", retry_in=f"{delay:.1f}")
    JOBS.labels(job.kind, "retried").inc()
    log.warning("job_retrying", reason=job.error, retry_in=round(delay, 1))
    raise Retry(defer=delay)


async def drain_cleanups(ctx: dict[str, Any]) -> int:
    """Delete the chunk sets whose cleanup is due, and the whole Chroma collections whose drop
    is; returns how many chunks went."""
    w = worker_context(ctx)
    await drop_collections(w)
    removed = 0
    live: dict[tuple[str, str], str | None] = {}  # each collection's Chroma id, read once
    for cleanup in await w.documents.due_cleanups(CLEANUPS_PER_ROUND):
        if await _still_needed(w, cleanup, live):
            await w.documents.postpone_cleanup(
                cleanup, time.time() + max(10, w.settings.version_grace_seconds)
            )
            continue
        try:
            removed += await w.chunks.delete_version(
                cleanup.chroma_id, cleanup.document_id, cleanup.tag
            )
        except DependencyUnavailable as exc:
            log.warning("cleanup_deferred", error=str(exc))
            break
        await w.documents.finish_cleanup(cleanup)
    CLEANED_CHUNKS.inc(removed)
    return removed


async def drop_collections(w: WorkerContext) -> int:
    """Drop the Chroma collections whose drop is due (a re-embedded collection's former one, a
    cancelled re-embedding's shadow), never one its collection uses again."""
    dropped = 0
    for drop in await w.migrations.due_drops(CLEANUPS_PER_ROUND):
        found = await w.registry.find(drop.namespace, drop.collection)
        if found is not None and drop.chroma_name == (
            found.chroma_name or w.keys.legacy_chroma_name(drop.namespace, drop.collection)
        ):
            await w.migrations.dropped(drop)  # a shadow that became the collection: keep it
            continue
        if (
            found is not None
            and found.migration
            and found.migration.chroma_name == drop.chroma_name
        ):
            # A migration's shadow while it runs (or waits to be resumed): look again later.
            await w.migrations.drop_later(drop, time.time() + drop_check_seconds(w.settings))
            continue
        try:
            if await w.chunks.delete_collection(drop.chroma_name):
                dropped += 1
                log.info("chroma_collection_dropped", collection=drop.collection)
        except DependencyUnavailable as exc:
            log.warning("collection_drop_deferred", error=str(exc))
            break
        await w.migrations.dropped(drop)
    DROPPED_COLLECTIONS.inc(dropped)
    return dropped


async def _still_needed(
    w: WorkerContext, cleanup: Cleanup, live: dict[tuple[str, str], str | None]
) -> bool:
    """Whether the chunks may still be (or become) what readers see. ``live`` keeps the
    Chroma id of each collection this round has looked up."""
    where = (cleanup.namespace, cleanup.collection)
    if where not in live:
        found = await w.registry.find(cleanup.namespace, cleanup.collection)
        live[where] = found.chroma_id if found else None
    if live[where] != cleanup.chroma_id:
        return False  # its collection was deleted (and maybe created anew under that name)
    tenant = cleanup.namespace
    current = await w.documents.get(tenant, cleanup.collection, cleanup.document_id)
    if current is not None and current.tag == cleanup.tag:
        return True
    if not cleanup.job_id:
        return False  # a replaced or deleted version: never active again
    latest = await w.documents.latest_sequence(tenant, cleanup.collection, cleanup.document_id)
    if latest > int(cleanup.tag):
        return False  # a newer change was requested: this one can never switch in
    job = await w.jobs.get(None, cleanup.job_id)  # job ids are unique over every tenant
    return job is not None and job.state not in FINAL_STATES and str(job.sequence) == cleanup.tag


async def heartbeat(w: WorkerContext) -> None:
    ttl = w.settings.worker_heartbeat_seconds
    await w.redis.set(w.keys.worker_heartbeat(w.worker_id), "1", ex=ttl)


async def reconcile(ctx: dict[str, Any]) -> dict[str, int]:
    """Keep every job moving: free jobs whose worker died, re-enqueue jobs whose enqueue was
    lost, delete chunks nobody needs, expire old index entries, refresh the queue gauges."""
    root = worker_context(ctx)
    freed = requeued = 0
    for tenant in await _namespaces(root):
        freed_here, requeued_here = await _reconcile_jobs(root, tenant)
        freed, requeued = freed + freed_here, requeued + requeued_here
        cutoff = time.time() - root.jobs.retention_seconds
        async with root.redis.pipeline(transaction=False) as pipe:
            for key in await _index_keys(root, tenant):
                pipe.zremrangebyscore(key, "-inf", cutoff)
            await pipe.execute()
    await drain_cleanups(ctx)
    QUEUE_DEPTH.set(await root.redis.zcard(root.keys.queue()))
    DEAD_LETTERED.set(await _count_dead(root))
    if freed or requeued:
        log.warning("reconciled", freed=freed, requeued=requeued)
    return {"freed": freed, "requeued": requeued}


async def _namespaces(root: WorkerContext) -> list[str]:
    return await root.registry.namespaces()


async def _count_dead(root: WorkerContext) -> int:
    total = 0
    for tenant in await _namespaces(root):
        total += await root.redis.zcard(root.keys.jobs_by_state(tenant, "dead"))
    return total


async def _reconcile_jobs(w: WorkerContext, tenant: str) -> tuple[int, int]:
    """One tenant's jobs: free those whose worker died, re-enqueue lost ones."""
    freed = requeued = 0
    now = time.time()
    for job in await w.jobs.find(tenant, state="running", limit=1000):
        if now - job.updated_at < ORPHAN_GRACE_SECONDS:
            continue
        stalled_after = attempt_timeout(w.settings, job) + STALLED_MARGIN_SECONDS
        stalled = now - job.updated_at > stalled_after
        if not stalled and job.worker == w.worker_id:
            continue
        if not stalled and job.worker and await w.redis.exists(w.keys.worker_heartbeat(job.worker)):
            continue
        # Its worker is gone (or its attempt ended unrecorded): let arq hand the job to a
        # live worker right away instead of waiting for the in-progress marker to time out.
        stopped = job.worker
        job.state = "queued"
        job.stage = (
            "requeued after its attempt stalled"
            if stalled
            else ("requeued after its worker stopped")
        )
        if await w.jobs.save(
            job, expect_states=("running",), expect_worker=stopped or "", event="requeued"
        ):
            await w.redis.delete(in_progress_key_prefix + job.arq_job_id)
            freed += 1
    for job in await w.jobs.find(tenant, state="queued", limit=1000):
        if job.next_attempt_at and job.next_attempt_at > now:
            continue
        if await w.redis.exists(job_key_prefix + job.arq_job_id):
            # However recent its record (requeued a moment ago, after its worker died):
            if await _picked_by_a_dead_worker(w, job):
                # arq marked it in progress long ago, yet no worker ever recorded it running:
                # the one that took it died in between (SIGKILL, OOM). Without this the
                # marker holds the job for JOB_TIMEOUT_SECONDS + 70 s.
                await w.redis.delete(in_progress_key_prefix + job.arq_job_id)
                log.warning("job_released", job_id=job.id, reason="picked by a dead worker")
                freed += 1
            continue
        if now - job.updated_at < LOST_ENQUEUE_SECONDS:
            continue  # its enqueue may be on its way
        # arq no longer has it (a lost enqueue, or arq gave up on it): our record decides.
        if job.attempts >= job.max_attempts:
            reason = job.error or "the worker stopped during the last attempt"
            with contextlib.suppress(JobLost):  # it moved on meanwhile: nothing to do
                await _dead_letter(w, job, reason, expect=("queued",))
            continue
        await w.redis.delete(result_key_prefix + job.arq_job_id)
        await w.arq.enqueue_job(task_of(job), job.id, _job_id=job.arq_job_id)
        requeued += 1
    return freed, requeued


def attempt_timeout(settings: IngestSettings, job: JobRecord) -> int:
    if job.kind == "reembed":
        return settings.reembed_timeout_seconds
    return settings.job_timeout_seconds


def arq_job_timeout(settings: IngestSettings) -> int:
    """arq's own timeout of a document job's attempt (a backstop: each attempt enforces
    JOB_TIMEOUT_SECONDS itself and records it)."""
    return settings.job_timeout_seconds + 60


def arq_reembed_timeout(settings: IngestSettings) -> int:
    return settings.reembed_timeout_seconds + 60


def arq_marker_seconds(settings: IngestSettings) -> int:
    """How long arq's in-progress marker of any job lasts: its longest function timeout +
    10 s."""
    return max(arq_job_timeout(settings), arq_reembed_timeout(settings)) + 10


async def _picked_by_a_dead_worker(w: WorkerContext, job: JobRecord) -> bool:
    """Whether arq's in-progress marker of a job our record says is queued was set more than
    ``lost_start_seconds`` ago. A live worker records the job running within moments of taking
    it (the record is fenced, so a slow one that does start after all cannot write over the
    next run)."""
    left_ms = int(await w.redis.pttl(in_progress_key_prefix + job.arq_job_id))
    if left_ms <= 0:
        return False
    age_ms = arq_marker_seconds(w.settings) * 1000 - left_ms
    return age_ms > lost_start_seconds(w.settings) * 1000


def lost_start_seconds(settings: IngestSettings) -> int:
    """How long a job taken from the queue may stay unrecorded before it counts as dropped by
    a dead worker: two heartbeats (30 s by default); a live worker records it at once."""
    return 2 * settings.worker_heartbeat_seconds


async def _index_keys(w: WorkerContext, tenant: str) -> list[str]:
    finished = ("succeeded", "failed", "dead")
    keys = [w.keys.jobs_all(tenant)] + [w.keys.jobs_by_state(tenant, s) for s in finished]
    for collection in await w.registry.all(tenant):
        keys.append(w.keys.jobs_by_collection(tenant, collection.name))
        keys += [w.keys.jobs_by_collection_state(tenant, collection.name, s) for s in finished]
    return keys
