"""The ingest worker process: arq plus a health/metrics port, stopped gracefully by SIGTERM.

On SIGTERM the worker turns not-ready, stops taking jobs, lets running ones finish within
GRACEFUL_SHUTDOWN_SECONDS and then cancels the rest, which arq re-queues (every job is safe
to run again). While it runs it keeps a heartbeat in Redis; the reconciler of any worker
hands the jobs of a worker whose heartbeat stopped (SIGKILL, crash, lost node) to a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Any

import uvicorn
from arq import Worker, cron, func
from rag_config import IngestSettings
from rag_core.chroma import ChromaClient
from rag_core.clients import create_redis
from rag_core.embedding.models import EmbedderFactory
from rag_core.health import Readiness, create_ops_app
from rag_core.server import SignalFreeServer
from rag_core.workers import LiveWorkers
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rag_ingest.parsing.pool import ParserPool
from rag_ingest.queueing import deserialize_job, serialize_job
from rag_ingest.worker.check import health_check_key
from rag_ingest.worker.context import BatchedEmbedders, WorkerContext
from rag_ingest.worker.tasks import (
    arq_job_timeout,
    arq_reembed_timeout,
    drain_cleanups,
    heartbeat,
    ingest_document,
    reconcile,
    reembed_collection,
)

log = get_logger("rag.worker")


async def _wait_for_redis(redis: Redis, readiness: Readiness) -> None:
    """arq cannot run without Redis: wait for it (not ready meanwhile) instead of exiting."""
    delay = 0.5
    while not readiness.draining:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            log.warning("waiting_for_redis", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        else:
            return


def build_worker(context: WorkerContext, settings: IngestSettings) -> Worker:
    return Worker(
        functions=[
            # Attempts are counted (and limited) by the job record; arq's limit is a backstop.
            func(ingest_document, max_tries=settings.job_max_tries * 2 + 5),
            func(
                reembed_collection,
                max_tries=settings.job_max_tries * 2 + 5,
                timeout=arq_reembed_timeout(settings),
            ),
            func(drain_cleanups, max_tries=3),
        ],
        cron_jobs=[
            cron(
                reconcile,
                second=set(range(0, 60, settings.reconcile_interval_seconds)),
                run_at_startup=True,
                unique=False,
                timeout=60,
            )
        ],
        redis_pool=context.arq,
        queue_name=context.keys.queue(),
        max_jobs=settings.worker_concurrency,
        job_timeout=arq_job_timeout(settings),
        keep_result=3600,
        max_tries=settings.job_max_tries + 1,
        poll_delay=0.2,
        health_check_interval=10,
        health_check_key=health_check_key(context.keys.queue()),
        handle_signals=False,
        ctx={"rag": context},
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )


async def run_worker(settings: IngestSettings, ops_sock: socket.socket) -> int:
    redis = create_redis(settings, settings)
    chroma = ChromaClient(settings, settings)
    factory = EmbedderFactory(settings)
    # Load the default model now, not in the first job (it builds the ONNX file if needed).
    await asyncio.to_thread(factory.get, settings.embedding_model)
    # As many embedding calls in flight as the local model has threads to run them on.
    embedders = BatchedEmbedders(
        factory,
        max_texts=settings.embed_batch_size * 8,
        concurrency=settings.embed_threads or os.cpu_count() or 2,
    )
    parsers = ParserPool(
        workers=settings.parse_workers or min(4, os.cpu_count() or 1),
        max_memory_mb=settings.parse_max_memory_mb,
        timeout_seconds=settings.parse_timeout_seconds,
    )
    context = WorkerContext.create(settings, redis, chroma, embedders, parsers)
    worker = build_worker(context, settings)

    readiness = Readiness(timeout=settings.ready_check_timeout_seconds, started=True)
    readiness.checks.update(redis=redis.ping, chroma=chroma.heartbeat)
    ops = SignalFreeServer(
        uvicorn.Config(
            create_ops_app(readiness),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
        )
    )
    ops_task = asyncio.create_task(ops.serve(sockets=[ops_sock]))

    live = LiveWorkers(redis, context.keys)  # what GET /v1/system counts

    async def keep_heartbeat() -> None:
        while True:
            with contextlib.suppress(Exception):
                await heartbeat(context)
                await live.beat(context.worker_id)
            await asyncio.sleep(settings.worker_heartbeat_seconds / 3)

    async def drain_then_stop() -> None:
        deadline = asyncio.get_running_loop().time() + settings.graceful_shutdown_seconds
        while worker.tasks and any(not t.done() for t in worker.tasks.values()):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("shutdown_cancelling_jobs", running=len(worker.tasks))
                break
            await asyncio.sleep(0.1)
        worker.handle_sig(signal.SIGTERM)

    stopping: list[Any] = []

    def on_signal(signum: int) -> None:
        if stopping:
            worker.handle_sig(signal.SIGTERM)  # second signal: cancel at once
            return
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        readiness.draining = True
        worker.allow_pick_jobs = False
        stopping.append(asyncio.create_task(drain_then_stop()))

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    await _wait_for_redis(redis, readiness)
    beat = asyncio.create_task(keep_heartbeat())
    log.info(
        "worker_started",
        worker_id=context.worker_id,
        queue=context.keys.queue(),
        concurrency=settings.worker_concurrency,
        model=settings.embedding_model,
    )
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
    finally:
        beat.cancel()
        with contextlib.suppress(Exception):
            await redis.delete(context.keys.worker_heartbeat(context.worker_id))
            await live.leave(context.worker_id)
        await worker.close()
        ops.should_exit = True
        await ops_task
        await chroma.close()
        await redis.aclose()
        await factory.close()
        parsers.close()
        log.info("worker_stopped")
    return 0
