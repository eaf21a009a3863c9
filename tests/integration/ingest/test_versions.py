"""Document versions against REAL Redis and Chroma: the switch, deletes, dedup, cleanups.

These are the races a busy ingest runs into — a document re-sent while its first job runs,
quick X -> Y -> X changes, a delete racing a re-upload, a collection deleted under a job —
played out step by step, checking what a reader would see after each step.
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import msgspec
import numpy as np
import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix
from rag_config import IngestSettings
from rag_core.catalog import DEFAULT_NAMESPACE, Collection, DocumentRecord
from rag_core.chunks import StoredChunk, chunk_id, version_tag
from rag_core.errors import Conflict
from rag_ingest.components import IngestComponents
from rag_ingest.jobs.model import JobRecord
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.submissions import Submission
from rag_ingest.versions import Cleanup, auto_id, content_hash
from rag_ingest.worker.pipeline import IngestPipeline, job_cleanup
from rag_ingest.worker.tasks import (
    LOST_ENQUEUE_SECONDS,
    STALLED_MARGIN_SECONDS,
    _reconcile_jobs,
    arq_marker_seconds,
    drain_cleanups,
    heartbeat,
    lost_start_seconds,
)

from tests.support.embedding import WordHashEmbedder

T = DEFAULT_NAMESPACE  # the tenant of tests that do not name one

pytestmark = pytest.mark.integration


@dataclass
class Change:
    """One requested change of a document, as the API would register it."""

    job: JobRecord
    text: str
    own: Cleanup | None = None  # this run's cleanup entry, listed once

    @property
    def tag(self) -> str:
        return version_tag(self.job.sequence)

    def cleanup(self, collection: Collection) -> Cleanup:
        if self.own is None:
            self.own = job_cleanup(self.job, collection)
        return self.own


async def _collection(parts: IngestComponents) -> Collection:
    return await parts.registry.create(T, f"v-{uuid.uuid4().hex[:8]}", "all-MiniLM-L6-v2")


async def _request(parts: IngestComponents, col: Collection, doc: str, text: str) -> Change:
    job = JobRecord(
        id=uuid.uuid4().hex,
        kind="ingest",
        collection=col.name,
        namespace=col.namespace,
        document_id=doc,
        sequence=await parts.documents.next_sequence(col.namespace, col.name, doc),
    )
    await parts.jobs.create(job, text.encode())
    return Change(job, text)


async def _write_chunks(
    parts: IngestComponents, col: Collection, change: Change, *, reserve: bool = True
) -> list[str]:
    """What the worker does before the switch: reserve the cleanup, upsert the chunks."""
    doc = change.job.document_id
    assert doc is not None
    if reserve:
        await parts.documents.reserve_cleanup(change.cleanup(col), time.time())
    pieces = change.text.split()
    ids = [chunk_id(doc, change.tag, i) for i in range(len(pieces))]
    vectors = np.random.default_rng(0).random((len(pieces), 384), dtype=np.float32)
    await parts.chunks.write(
        col.chroma_id,
        [
            StoredChunk(chunk, doc, change.tag, i, piece)
            for i, (chunk, piece) in enumerate(zip(ids, pieces, strict=True))
        ],
        vectors,
    )
    return ids


async def _switch(parts: IngestComponents, col: Collection, change: Change) -> str:
    doc = change.job.document_id
    assert doc is not None
    digest = content_hash(change.text.encode())
    record = DocumentRecord(
        id=doc,
        version=0,
        tag=change.tag,
        content_hash=digest,
        version_hash=digest,
        chunk_count=len(change.text.split()),
        sequence=change.job.sequence,
    )
    outcome = await parts.documents.switch_to(
        col.namespace, col.name, col.chroma_id, record, change.cleanup(col)
    )
    return outcome.status


async def _visible(parts: IngestComponents, col: Collection, doc: str) -> list[str]:
    """What a reader sees: the chunks of the active version, in order."""
    record = await parts.documents.get(col.namespace, col.name, doc)
    if record is None:
        return []
    return [c.text for c in await parts.chunks.version(col.chroma_id, doc, record.tag)]


async def _stored_tags(parts: IngestComponents, col: Collection, doc: str) -> set[str]:
    return await parts.chunks.stored_versions(col.chroma_id, doc)


async def _drain(parts: IngestComponents) -> int:
    return await drain_cleanups({"rag": SimpleNamespace(**parts.as_dict())})


async def _finish(parts: IngestComponents, change: Change, state: str = "succeeded") -> None:
    change.job.state = state  # type: ignore[assignment]
    assert await parts.jobs.save(change.job)


async def test_an_older_change_finishing_last_is_superseded_and_cleaned(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    first = await _request(parts, col, "d", "alpha beta")
    second = await _request(parts, col, "d", "gamma delta epsilon")
    await _write_chunks(parts, col, second)
    assert await _switch(parts, col, second) == "created"
    await _write_chunks(parts, col, first)  # the slow job finishes after the newer one
    assert await _switch(parts, col, first) == "superseded"
    assert await _visible(parts, col, "d") == ["gamma", "delta", "epsilon"]

    await _finish(parts, first)
    await _finish(parts, second)
    await _drain(parts)
    assert await _stored_tags(parts, col, "d") == {second.tag}
    assert await _visible(parts, col, "d") == ["gamma", "delta", "epsilon"]


async def test_x_then_y_then_x_again_never_loses_the_active_chunks(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    x1 = await _request(parts, col, "d", "same words here")
    await _write_chunks(parts, col, x1)
    assert await _switch(parts, col, x1) == "created"
    await _finish(parts, x1)
    y = await _request(parts, col, "d", "other words")
    x2 = await _request(parts, col, "d", "same words here")
    await _write_chunks(parts, col, x2)  # same content as the active version...
    assert await _switch(parts, col, x2) == "unchanged"
    await _write_chunks(parts, col, y)
    assert await _switch(parts, col, y) == "superseded"
    for change in (x2, y):
        await _finish(parts, change)
    await _drain(parts)
    # ...but its own chunks: cleaning them up leaves the active ones untouched.
    assert await _visible(parts, col, "d") == ["same", "words", "here"]
    assert await _stored_tags(parts, col, "d") == {x1.tag}


async def test_delete_racing_a_re_upload_keeps_the_new_upload(parts: IngestComponents) -> None:
    col = await _collection(parts)
    old = await _request(parts, col, "d", "old text")
    await _write_chunks(parts, col, old)
    await _switch(parts, col, old)
    await _finish(parts, old)
    new = await _request(parts, col, "d", "new text arrives")
    await _write_chunks(parts, col, new)
    removed = await parts.documents.remove(col.namespace, col.name, "d")
    assert removed.status == "deleted"
    assert await _visible(parts, col, "d") == []  # invisible at once
    # The re-upload was requested before the delete: the delete wins over it.
    assert await _switch(parts, col, new) == "superseded"
    again = await _request(parts, col, "d", "new text arrives")
    await _write_chunks(parts, col, again)
    assert await _switch(parts, col, again) == "created"
    await _finish(parts, new)
    await _finish(parts, again)
    await _drain(parts)
    assert await _visible(parts, col, "d") == ["new", "text", "arrives"]
    assert await _stored_tags(parts, col, "d") == {again.tag}
    found = await parts.registry.get(col.namespace, col.name)
    assert (found.document_count, found.chunk_count) == (1, 3)


async def test_same_content_auto_named_is_a_duplicate_and_keeps_the_index(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    digest = content_hash(b"shared text")
    a = await _request(parts, col, "a", "shared text")
    await _write_chunks(parts, col, a)
    assert await _switch(parts, col, a) == "created"
    # Named by its content (no id given): the same text is the same document.
    b = await _request(parts, col, auto_id(digest), "shared text")
    await _write_chunks(parts, col, b)
    assert await _switch(parts, col, b) == "duplicate"
    assert await parts.documents.get(col.namespace, col.name, auto_id(digest)) is None
    # Named by the caller: a document of its own.
    named = await _request(parts, col, "b", "shared text")
    await _write_chunks(parts, col, named)
    assert await _switch(parts, col, named) == "created"
    assert await _visible(parts, col, "b") == ["shared", "text"]
    assert await parts.documents.owner_of(col.namespace, col.name, digest) == "a"

    # A document that exists may take content another one has; leaving it again must not
    # drop the other's entry from the dedup index.
    c = await _request(parts, col, "c", "unique text")
    await _write_chunks(parts, col, c)
    await _switch(parts, col, c)
    c2 = await _request(parts, col, "c", "shared text")
    await _write_chunks(parts, col, c2)
    assert await _switch(parts, col, c2) == "replaced"
    c3 = await _request(parts, col, "c", "unique again")
    await _write_chunks(parts, col, c3)
    assert await _switch(parts, col, c3) == "replaced"
    assert await parts.documents.owner_of(col.namespace, col.name, digest) == "a"


async def test_a_switch_after_its_collection_was_deleted_writes_nothing(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    change = await _request(parts, col, "d", "late words")
    await _write_chunks(parts, col, change)
    await parts.registry.delete(col.namespace, col.name)
    recreated = await parts.registry.create(col.namespace, col.name, "all-MiniLM-L6-v2")
    assert await _switch(parts, col, change) == "gone"  # its chunks went to the old one
    assert await parts.documents.get(col.namespace, col.name, "d") is None
    found = await parts.registry.get(col.namespace, col.name)
    assert (found.version, found.chunk_count, found.document_count) == (0, 0, 0)
    assert recreated.chroma_id != col.chroma_id


async def test_a_running_jobs_own_chunks_wait_until_it_cannot_switch_any_more(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    change = await _request(parts, col, "d", "in progress")
    change.job.state = "running"
    assert await parts.jobs.save(change.job)
    await _write_chunks(parts, col, change)  # its cleanup is due at once (grace 0)
    await _drain(parts)
    assert await _stored_tags(parts, col, "d") == {change.tag}, "a running job keeps them"
    await _finish(parts, change, "failed")
    await parts.redis.zadd(parts.keys.cleanups(), {change.cleanup(col).member(): 0})
    await _drain(parts)
    assert await _stored_tags(parts, col, "d") == set(), "a failed job's chunks go"


async def test_two_runs_of_one_job_each_list_their_own_chunks(
    parts: IngestComponents,
) -> None:
    """Run A of a job lists its chunks and stalls; run B of the same job (a redelivery) is
    superseded, removes the chunks and takes its entry off the list; A then writes its chunks
    and stops (its job record was finished by B). A's entry must still be listed: before each
    run had its own, B's removal took A's with it and A's chunks stayed forever."""
    col = await _collection(parts)
    first = await _request(parts, col, "d", "alpha words")
    newer = await _request(parts, col, "d", "beta words")
    run_a = Change(first.job, first.text)
    run_b = Change(copy.deepcopy(first.job), first.text)
    await parts.documents.reserve_cleanup(run_a.cleanup(col), time.time())  # A stalls here
    ids = await _write_chunks(parts, col, run_b)
    assert await _switch(parts, col, run_b) == "superseded"
    await parts.chunks.delete(col.chroma_id, ids)  # what the pipeline's discard does
    await parts.documents.finish_cleanup(run_b.cleanup(col))
    await _finish(parts, run_b)
    # A resumes: it listed its chunks before it stalled, writes them, and its next job write
    # is refused (B finished the job), so A stops there.
    await _write_chunks(parts, col, run_a, reserve=False)
    await _write_chunks(parts, col, newer)
    assert await _switch(parts, col, newer) == "created"
    await _drain(parts)
    assert await _stored_tags(parts, col, "d") == {newer.tag}, "no chunks of A's are left"


async def test_a_cleanup_of_a_deleted_collection_goes_when_the_name_is_used_again(
    parts: IngestComponents,
) -> None:
    """A job's chunks listed in a collection that was then deleted and created anew: the new
    collection's document with the same tag must not keep the old entry waiting forever."""
    col = await _collection(parts)
    stale = await _request(parts, col, "d", "old words")
    await _write_chunks(parts, col, stale)
    await _finish(parts, stale, "failed")
    await parts.registry.delete(col.namespace, col.name)
    recreated = await parts.registry.create(col.namespace, col.name, "all-MiniLM-L6-v2")
    fresh = await _request(parts, recreated, "d", "new words")
    assert fresh.tag == stale.tag, "the new collection's first change has the same tag"
    await _write_chunks(parts, recreated, fresh)
    assert await _switch(parts, recreated, fresh) == "created"
    await _drain(parts)
    listed = [m.decode() for m in await parts.redis.zrange(parts.keys.cleanups(), 0, -1)]
    assert listed == [], "only the live collection's active chunks remain, and nothing listed"
    assert await _stored_tags(parts, recreated, "d") == {fresh.tag}


async def test_job_writes_are_fenced(parts: IngestComponents) -> None:
    col = await _collection(parts)
    change = await _request(parts, col, "d", "fenced")
    job = change.job
    job.state, job.worker = "running", "worker-a"
    assert await parts.jobs.save(job, expect_states=("queued",))
    # The reconciler took worker-a for dead and handed the job on.
    job.state, job.worker = "queued", None
    assert await parts.jobs.save(job, expect_states=("running",), expect_worker="worker-a")
    # worker-a, alive after all, may no longer write it.
    stale = await parts.jobs.get(T, job.id)
    assert stale is not None
    stale.state, stale.worker = "succeeded", "worker-a"
    assert not await parts.jobs.save(stale, expect_states=("running",), expect_worker="worker-a")
    current = await parts.jobs.get(T, job.id)
    assert current is not None
    assert current.state == "queued"
    # A write for an earlier run (the job was retried since) is refused too.
    job.run, job.state = 2, "queued"
    assert await parts.jobs.save(job, expect_run=1)
    job.run = 1
    assert not await parts.jobs.save(job)
    queued = await parts.jobs.find(T, state="queued", collection=col.name)
    assert [j.id for j in queued] == [job.id]
    assert await parts.jobs.find(T, state="running", collection=col.name) == []


# Tenants (issue 14) -------------------------------------------------------------------------


async def test_colliding_tenant_and_collection_names_never_share_a_chroma_collection(
    parts: IngestComponents,
) -> None:
    """``acme`` + ``x-hbk`` and ``acme-x`` + ``hbk`` once met in one Chroma collection
    (``<prefix>-acme-x-hbk``): B deleting its ``hbk`` destroyed A's ``x-hbk``."""
    a = b = parts  # one set of stores serves every tenant
    col_a = await a.registry.create("acme", "x-hbk", "all-MiniLM-L6-v2")
    change = await _request(a, col_a, "d", "tenant a words")
    await _write_chunks(a, col_a, change)
    assert await _switch(a, col_a, change) == "created"

    col_b = await b.registry.create("acme-x", "hbk", "all-MiniLM-L6-v2")
    assert col_b.chroma_id != col_a.chroma_id
    await b.registry.delete("acme-x", "hbk")

    assert await _visible(a, col_a, "d") == ["tenant", "a", "words"]
    assert (await a.registry.get("acme", "x-hbk")).chroma_id == col_a.chroma_id
    assert await b.registry.find("acme-x", "hbk") is None


async def test_a_collection_name_claimed_by_a_create_that_died_is_taken_over(
    parts: IngestComponents,
) -> None:
    name = f"v-{uuid.uuid4().hex[:8]}"
    # What a create that died between its claim and its Chroma call leaves behind.
    await parts.redis.hset(parts.keys.collection(T, name), mapping={"name": name, "claimed_at": 0})  # type: ignore[misc]
    created = await parts.registry.create(T, name, "all-MiniLM-L6-v2")
    assert (await parts.registry.get(T, name)).chroma_id == created.chroma_id
    with pytest.raises(Conflict):
        await parts.registry.create(T, name, "all-MiniLM-L6-v2")


async def test_a_tenants_running_job_keeps_its_chunks_whatever_another_tenant_did(
    parts: IngestComponents,
) -> None:
    """Cleanups once recorded every job as the default tenant's: a drain then judged a
    tenant's running job by the default tenant's records of the same names, and deleted it."""
    tenant = parts
    col = await tenant.registry.create("acme", "shared", "all-MiniLM-L6-v2")
    running = await _request(tenant, col, "d", "in flight words")
    running.job.state = "running"
    assert await tenant.jobs.save(running.job)
    await _write_chunks(tenant, col, running)  # its cleanup is due at once (grace 0)

    # The default tenant has the same collection and document names, changed more often.
    other = await parts.registry.create(T, "shared", "all-MiniLM-L6-v2")
    for _ in range(3):
        await _request(parts, other, "d", "default tenant words")

    await _drain(parts)
    assert await _stored_tags(tenant, col, "d") == {running.tag}


async def test_a_second_run_of_a_job_that_switched_in_meanwhile_keeps_the_live_chunks(
    parts: IngestComponents,
) -> None:
    """A worker paused past its heartbeat resumes after another run of the same job finished:
    its switch finds its own version active. It once took that for 'unchanged' and deleted
    its chunks, which are the live ones (same ids)."""
    col = await _collection(parts)
    [accepted] = await parts.ingest.submit(
        col.namespace,
        col.name,
        [Submission(b"alpha beta gamma delta", where="documents[0]", document_id="d")],
    )
    job = accepted
    payload = await parts.jobs.payload(job.id)
    assert payload is not None
    embedder = WordHashEmbedder()
    parsers = ParserPool(workers=1, max_memory_mb=512, timeout_seconds=30)
    pipeline = IngestPipeline(
        parts.settings, parts.documents, parts.chunks, lambda _: embedder, parsers
    )
    first: dict[str, object] = {}

    async def nothing(stage: str, fraction: float) -> None:
        return None

    async def other_run_finishes_first(stage: str, fraction: float) -> None:
        if not first:
            first.update(
                await pipeline.run(
                    job=copy.copy(job), collection=col, payload=payload, progress=nothing
                )
            )

    try:
        second = await pipeline.run(
            job=copy.copy(job), collection=col, payload=payload, progress=other_run_finishes_first
        )
    finally:
        parsers.close()
    assert first["status"] == "created"
    assert second["status"] == "created"  # the same change: it reports what is active
    assert await _visible(parts, col, "d") == ["alpha beta gamma delta"]
    await _finish(parts, Change(job, ""))
    await _drain(parts)
    assert await _visible(parts, col, "d") == ["alpha beta gamma delta"]
    pending = await parts.redis.zrange(parts.keys.cleanups(), 0, -1)
    assert pending == [], "nothing of the live version is left listed for cleanup"


async def test_deleting_a_document_that_never_existed_leaves_no_key(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    before = set(await parts.redis.keys(f"{parts.keys.prefix}:*"))
    for made_up in ("never-1", "never-2", "never-3"):
        outcome = await parts.documents.remove(col.namespace, col.name, made_up)
        assert outcome.status == "missing"
    after = set(await parts.redis.keys(f"{parts.keys.prefix}:*"))
    assert after - before == set()


async def test_a_job_whose_result_could_not_be_saved_is_not_left_running(
    parts: IngestComponents,
) -> None:
    """Redis failed as a live worker saved a job's verdict: the record says running on a
    worker whose heartbeat is fresh. Once it has been silent past JOB_TIMEOUT_SECONDS, no
    attempt can still be running it: the reconciler hands it on (it used to stay running)."""
    col = await _collection(parts)
    stuck = await _request(parts, col, "stuck", "never finished")
    busy = await _request(parts, col, "busy", "still working")
    for change in (stuck, busy):
        change.job.state, change.job.worker = "running", "alive-worker"
        assert await parts.jobs.save(change.job)
    await parts.redis.set(parts.keys.worker_heartbeat("alive-worker"), "1", ex=60)
    silent = parts.settings.job_timeout_seconds + STALLED_MARGIN_SECONDS + 1
    raw = await parts.redis.get(parts.keys.job(stuck.job.id))
    record = msgspec.json.decode(raw)
    record["updated_at"] -= silent
    await parts.redis.set(parts.keys.job(stuck.job.id), msgspec.json.encode(record), keepttl=True)

    worker = SimpleNamespace(**parts.as_dict(), worker_id="another-worker")
    freed, _ = await _reconcile_jobs(worker, T)  # type: ignore[arg-type]
    assert freed == 1
    handed_on = await parts.jobs.get(T, stuck.job.id)
    assert handed_on is not None
    assert (handed_on.state, handed_on.stage) == ("queued", "requeued after its attempt stalled")
    running = await parts.jobs.get(T, busy.job.id)
    assert running is not None
    assert running.state == "running", "a job that is making progress is left alone"


# The record's age: queued a while ago, or requeued a moment ago (its worker killed) and then
# taken by a worker killed in turn (it waited LOST_ENQUEUE_SECONDS more: a SIGKILL test).
@pytest.mark.parametrize("record_age", [LOST_ENQUEUE_SECONDS + 60, 0])
async def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_released(
    record_age: int,
    parts: IngestComponents,
) -> None:
    """A worker killed after arq marked a job in progress but before it recorded the job
    running left it queued in our record and held by arq's marker for JOB_TIMEOUT_SECONDS +
    70 s (16 minutes by default; a SIGKILL test saw a job wait out its 400 s). A marker older
    than two heartbeats (lost_start_seconds) on a job still queued is released; a fresh one
    is left alone."""
    col = await _collection(parts)
    lost = await _request(parts, col, "lost", "taken then dropped")
    fresh = await _request(parts, col, "fresh", "being started right now")
    marker_ms = arq_marker_seconds(parts.settings) * 1000
    for change, age_ms in ((lost, (lost_start_seconds(parts.settings) + 5) * 1000), (fresh, 1000)):
        raw = await parts.redis.get(parts.keys.job(change.job.id))
        record = msgspec.json.decode(raw)
        record["updated_at"] -= record_age
        await parts.redis.set(parts.keys.job(change.job.id), msgspec.json.encode(record))
        await parts.redis.set(job_key_prefix + change.job.arq_job_id, b"job")
        await parts.redis.psetex(
            in_progress_key_prefix + change.job.arq_job_id, marker_ms - age_ms, b"1"
        )

    worker = SimpleNamespace(**parts.as_dict(), worker_id="a-live-worker")
    freed, requeued = await _reconcile_jobs(worker, T)  # type: ignore[arg-type]
    assert (freed, requeued) == (1, 0)
    assert not await parts.redis.exists(in_progress_key_prefix + lost.job.arq_job_id)
    assert await parts.redis.exists(in_progress_key_prefix + fresh.job.arq_job_id)
    for change in (lost, fresh):
        await parts.redis.delete(job_key_prefix + change.job.arq_job_id)
        await parts.redis.delete(in_progress_key_prefix + change.job.arq_job_id)


async def test_a_heartbeat_lasts_worker_heartbeat_seconds(parts: IngestComponents) -> None:
    """WORKER_HEARTBEAT_SECONDS sets how long a silent worker counts as alive (it was a fixed
    15 s): the reconciler hands its jobs on once its heartbeat key has expired."""
    settings = parts.settings.model_copy(update={"worker_heartbeat_seconds": 4})
    worker = SimpleNamespace(**(parts.as_dict() | {"settings": settings}), worker_id="w-4")
    await heartbeat(worker)  # type: ignore[arg-type]
    assert 0 < await parts.redis.ttl(parts.keys.worker_heartbeat("w-4")) <= 4


def test_the_reconcile_interval_divides_a_minute() -> None:
    assert IngestSettings(_env_file=None, reconcile_interval_seconds=2).reconcile_interval_seconds
    with pytest.raises(ValueError, match="a divisor of 60"):
        IngestSettings(_env_file=None, reconcile_interval_seconds=7)
