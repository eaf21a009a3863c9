"""Re-embedding against REAL Redis and Chroma, step by step: the copy, writes made during it,
a run stopped half-way, a cancel, a delete, and a document job caught by the switch.

The two "models" are deterministic word-hash embedders whose vectors differ (the second one's
are the first one's negated), so which model wrote a vector is visible in Chroma. The whole
thing through the real worker, nginx and the ONNX models is tests/e2e/gateway/test_reembed.py.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from rag_core.catalog import DEFAULT_NAMESPACE, Collection, Migration
from rag_core.chunks import StoredChunk, embedded_text
from rag_core.embedding.models import MODELS as MODEL_SPECS
from rag_core.embedding.models import EmbedderFactory
from rag_core.errors import Conflict
from rag_ingest.components import IngestComponents
from rag_ingest.jobs.model import JobRecord
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.reembedding.migration import MigrationStopped, Reembedder
from rag_ingest.submissions import Submission
from rag_ingest.worker.context import BatchedEmbedders, WorkerContext
from rag_ingest.worker.pipeline import IngestPipeline
from rag_ingest.worker.runner import build_worker
from rag_ingest.worker.tasks import arq_marker_seconds, drain_cleanups
from rag_query.retrieval.served import ServedCollections

from tests.support.embedding import WordHashEmbedder

pytestmark = pytest.mark.integration
T = DEFAULT_NAMESPACE
FROM, TO = "all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8"


class FlippedEmbedder(WordHashEmbedder):
    """The other model: every vector negated."""

    async def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return -(await super().embed_documents(texts))


MODELS: dict[str, WordHashEmbedder] = {FROM: WordHashEmbedder(), TO: FlippedEmbedder()}


class Stop(Exception):
    """Stands for the worker dying at a given step."""


def reembedder(parts: IngestComponents) -> Reembedder:
    return Reembedder(
        parts.settings,
        parts.redis,
        parts.keys,
        parts.registry,
        parts.migrations,
        parts.documents,
        parts.chunks,
        MODELS.__getitem__,
    )


def pipeline(parts: IngestComponents, parsers: ParserPool) -> IngestPipeline:
    return IngestPipeline(
        parts.settings,
        parts.documents,
        parts.chunks,
        MODELS.__getitem__,
        parsers,
        find_collection=parts.registry.find,
    )


@pytest.fixture
def parsers() -> Any:
    pool = ParserPool(workers=1, max_memory_mb=512, timeout_seconds=30)
    yield pool
    pool.close()


async def nothing(stage: str, fraction: float, **data: Any) -> None:
    return None


async def ingest(
    parts: IngestComponents, parsers: ParserPool, col: Collection, docs: dict[str, str]
) -> None:
    jobs = await parts.ingest.submit(
        T,
        col.name,
        [
            Submission(text.encode(), where=f"documents[{i}]", document_id=doc)
            for i, (doc, text) in enumerate(docs.items())
        ],
    )
    for job in jobs:
        payload = await parts.jobs.payload(job.id)
        assert payload is not None
        fresh = await parts.registry.get(T, col.name)
        result = await pipeline(parts, parsers).run(
            job=job, collection=fresh, payload=payload, progress=nothing
        )
        assert result["status"] in ("created", "replaced"), result


async def shadow_holds(parts: IngestComponents, col: Collection) -> dict[str, str]:
    """Document -> the one version the collection's Chroma collection holds of it (checking it
    holds exactly one, whole, and that its vectors are the collection's model's)."""
    records = {
        r.id: r
        for r in await parts.documents.get_many(
            T, col.name, await parts.documents.page(T, col.name, offset=0, limit=1000)
        )
    }
    counts = await parts.chunks.version_counts(col.chroma_id, list(records))
    held: dict[str, str] = {}
    for (doc, tag), count in counts.items():
        assert doc not in held, f"{doc} has two versions stored"
        held[doc] = tag
        assert count == records[doc].chunk_count, doc
        chunks = await parts.chunks.version(col.chroma_id, doc, tag, vectors=True)
        expected = await MODELS[col.embedding_model].embed_documents(
            [embedded_text(c) for c in chunks]
        )
        stored = np.stack([c.vector for c in chunks if c.vector is not None])
        assert np.allclose(stored, expected, atol=1e-5), f"{doc}: not {col.embedding_model}'s"
    assert held == {doc: r.tag for doc, r in records.items()}
    return held


async def start(parts: IngestComponents, col: Collection, model: str = TO) -> JobRecord:
    return await parts.reembedding.start(T, col.name, model)


async def run(parts: IngestComponents, job: JobRecord, progress: Any = nothing) -> dict[str, Any]:
    col = await parts.registry.get(T, job.collection)
    return await reembedder(parts).run(copy.copy(job), col, progress)


async def drain(parts: IngestComponents) -> None:
    await drain_cleanups({"rag": SimpleNamespace(**parts.as_dict())})


async def chroma_names(parts: IngestComponents) -> set[str]:
    listed = await parts.chunks.chroma._request(  # type: ignore[attr-defined]
        "GET", "/api/v2/tenants/default_tenant/databases/default_database/collections"
    )
    return {c["name"] for c in listed}


def corpus(count: int) -> dict[str, str]:
    return {f"d{i}": f"note {i} about topic{i % 3} and more words {i}" for i in range(count)}


async def populated(parts: IngestComponents, parsers: ParserPool, count: int) -> Collection:
    """A new collection with the first model and ``count`` one-chunk documents."""
    col = await parts.registry.create(T, f"r-{uuid.uuid4().hex[:8]}", FROM)
    await ingest(parts, parsers, col, corpus(count))
    return col


def at_first_copy_step(action: Any) -> Any:
    """A progress callback that runs ``action()`` once, after the first step of the copy."""
    done: list[bool] = []

    async def progress(stage: str, fraction: float, **data: Any) -> None:
        if stage == "copying" and data.get("documents") and not done:
            done.append(True)
            await action()

    return progress


async def test_a_migration_copies_every_version_and_catches_up_the_writes_made_meanwhile(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    col = await populated(parts, parsers, 7)
    job = await start(parts, col)
    written: list[str] = []

    async def write() -> None:
        # Between two steps of the copy: new, replaced and deleted documents, all of them
        # written to the collection in use (with its model).
        await ingest(parts, parsers, col, {"new": "a brand new note", "d0": "d0 rewritten"})
        await parts.documents.remove(T, col.name, "d1")
        written.append("yes")

    result = await run(parts, job, at_first_copy_step(write))
    assert written
    assert result["status"] == "switched"
    assert result["previous_model"] == FROM
    assert result["documents"] == 7
    after = await parts.registry.get(T, col.name)
    assert after.embedding_model == TO
    assert after.chroma_id != col.chroma_id
    assert after.lineage == (col.chroma_id,)
    assert after.migration is None
    assert after.version > col.version
    held = await shadow_holds(parts, after)
    assert "new" in held
    assert "d1" not in held
    assert held["d0"] == (await parts.documents.get(T, col.name, "d0")).tag  # type: ignore[union-attr]
    assert [c.text for c in await parts.chunks.version(after.chroma_id, "d0", held["d0"])] == [
        "d0 rewritten"
    ]
    # The former Chroma collection goes once its grace period is over (0 s here).
    before = await chroma_names(parts)
    assert col.chroma_name in before
    await drain(parts)
    names = await chroma_names(parts)
    assert col.chroma_name not in names
    assert after.chroma_name in names


async def test_a_run_stopped_half_way_resumes_without_embedding_again_what_it_copied(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    col = await populated(parts, parsers, 9)
    job = await start(parts, col)

    async def die_after_two_steps(stage: str, fraction: float, **data: Any) -> None:
        if stage == "copying" and data.get("documents", 0) >= 4:
            raise Stop

    with pytest.raises(Stop):
        await run(parts, job, die_after_two_steps)
    half = await parts.registry.get(T, col.name)
    assert half.embedding_model == FROM
    assert half.migration is not None
    assert half.migration.chroma_id
    result = await run(parts, job)
    assert result["status"] == "switched"
    assert result["chunks_already_copied"] >= 4
    assert result["chunks_embedded"] + result["chunks_already_copied"] == 9
    await shadow_holds(parts, await parts.registry.get(T, col.name))


async def test_a_cancel_stops_the_run_drops_the_shadow_and_keeps_the_collection(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    col = await populated(parts, parsers, 6)
    before = await chroma_names(parts)
    job = await start(parts, col)
    cancelled: list[Any] = []

    async def cancel() -> None:
        cancelled.append(await parts.reembedding.cancel(T, col.name))

    with pytest.raises(MigrationStopped):
        await run(parts, job, at_first_copy_step(cancel))
    assert cancelled[0].state == "failed"
    assert cancelled[0].error_stage == "cancelled"
    kept = await parts.registry.get(T, col.name)
    assert kept.embedding_model == FROM
    assert kept.chroma_id == col.chroma_id
    assert kept.migration is None
    assert await chroma_names(parts) - before, "the shadow was made"
    await drain(parts)
    assert await chroma_names(parts) == before, "the shadow is dropped, nothing else"
    await shadow_holds(parts, kept)
    # A new one starts afresh, and a second one while it waits is refused.
    again = await start(parts, col)
    with pytest.raises(Exception, match="already"):
        await start(parts, col)
    assert (await run(parts, again))["status"] == "switched"


async def dead_after_first_copy_step(
    parts: IngestComponents, col: Collection, job: JobRecord
) -> Migration:
    """Run ``job`` until its worker dies after the first step of the copy, and end the job
    dead: the collection's migration it leaves."""

    async def die() -> None:
        raise Stop

    with pytest.raises(Stop):
        await run(parts, job, at_first_copy_step(die))
    job.state, job.stage = "dead", "copying"
    assert await parts.jobs.save(job)
    migration = (await parts.registry.get(T, col.name)).migration
    assert migration is not None
    return migration


@pytest.mark.parametrize("resumed_by", ["a new request", "a retry of its job"])
async def test_a_dead_migration_resumes_its_shadow(
    resumed_by: str, parts: IngestComponents, parsers: ParserPool
) -> None:
    col = await populated(parts, parsers, 6)
    first = await start(parts, col)
    shadow = await dead_after_first_copy_step(parts, col, first)
    if resumed_by == "a new request":
        second = await start(parts, col)
    else:
        second = await parts.ingest.retry(T, first.id)
        assert (second.id, second.run, second.state) == (first.id, 2, "queued")
    resumed = (await parts.registry.get(T, col.name)).migration
    assert resumed is not None
    assert resumed.job_id == second.id
    assert resumed.chroma_id == shadow.chroma_id  # the same shadow, resumed
    result = await run(parts, second)
    assert result["status"] == "switched"
    assert result["chunks_already_copied"] >= 2
    await shadow_holds(parts, await parts.registry.get(T, col.name))


async def test_deleting_the_collection_mid_migration_drops_the_shadow_too(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    col = await populated(parts, parsers, 4)
    job = await start(parts, col)

    async def delete() -> None:
        await parts.registry.delete(T, col.name)

    before = await chroma_names(parts)
    with pytest.raises(MigrationStopped):
        await run(parts, job, at_first_copy_step(delete))
    left = await chroma_names(parts)
    assert col.chroma_name not in left
    assert not (left - before), "no shadow left behind"


async def test_a_document_job_that_wrote_before_the_switch_writes_again_into_the_new_one(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A job reads its collection, writes its chunks, then switches its record in; a
    re-embedding that switched in between used to make that last step find the collection
    "deleted" (another Chroma id), and the job failed."""
    col = await populated(parts, parsers, 3)
    [doc_job] = await parts.ingest.submit(
        T, col.name, [Submission(b"written during the switch", where="d", document_id="late")]
    )
    payload = await parts.jobs.payload(doc_job.id)
    assert payload is not None
    migration = await start(parts, col)

    async def switch_first(stage: str, fraction: float, **data: Any) -> None:
        if stage == "publishing" and not switched:
            switched.append(await run(parts, migration))

    switched: list[dict[str, Any]] = []
    result = await pipeline(parts, parsers).run(
        job=doc_job, collection=col, payload=payload, progress=switch_first
    )
    assert switched[0]["status"] == "switched"
    assert result["status"] == "created", result
    after = await parts.registry.get(T, col.name)
    assert after.embedding_model == TO
    held = await shadow_holds(parts, after)
    assert "late" in held
    assert await parts.chunks.stored_versions(col.chroma_id, "late") == set()


async def test_the_worker_runs_re_embeddings_with_their_own_timeout(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A re-embedding runs as ``reembed_collection`` with REEMBED_TIMEOUT_SECONDS (a document
    job's JOB_TIMEOUT_SECONDS would cut a large one short), and the reconciler's idea of how
    long arq's in-progress marker lasts follows arq's (its longest function timeout)."""
    settings = parts.settings.model_copy(
        update={"job_timeout_seconds": 30, "reembed_timeout_seconds": 5000}
    )
    context = WorkerContext.create(
        settings,
        parts.redis,
        parts.chunks.chroma,  # type: ignore[attr-defined]
        BatchedEmbedders(EmbedderFactory(settings), max_texts=8, concurrency=1),
        parsers,
    )
    worker = build_worker(context, settings)  # never started: nothing to close
    assert worker.functions["reembed_collection"].timeout_s == 5060
    assert worker.job_timeout_s == 90
    assert worker.in_progress_timeout_s == arq_marker_seconds(settings) == 5070


async def test_a_query_replica_reads_changes_after_the_switch_from_the_new_collection(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A replica's follower looked at the collection before a switch, then read a document
    written just after it from the former Chroma collection (where it is not): the document
    stayed out of its lexical index until a restart. The switch is an entry of the change
    stream now, and the follower reads what comes after it from the new collection."""
    col = await populated(parts, parsers, 3)
    served = ServedCollections(parts.redis, parts.chunks, parts.keys, k1=1.2, b=0.75)
    try:
        index = await served.ensure(col)  # built from the former collection
        assert set(index.documents) == {"d0", "d1", "d2"}
        assert (await run(parts, await start(parts, col)))["status"] == "switched"
        moved = await parts.registry.get(T, col.name)
        await ingest(parts, parsers, moved, {"late": "zebra quagga okapi"})
        await served._follow_once()  # what the replica's follower task does
        assert index.active_tag("late") is not None
        assert [chunk for chunk, _ in index.search("quagga", 3)], "indexed with its chunks"
        assert served.version(moved) == moved.version + 1  # the switch, then the upsert
        assert served.get(T, col.name) is index  # the same index: nothing was rebuilt
    finally:
        served.close()


async def test_a_stalled_run_finding_its_job_switched_by_another_run_drops_nothing(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """Run A of a job stalls as it makes the shadow; its job is delivered again and run B
    migrates and switches, the shadow now the collection. A then found the shadow taken, took
    that for a cancel and deleted it: the live collection. Now it reports the switch."""
    col = await populated(parts, parsers, 4)
    job = await start(parts, col)
    create = parts.chunks.create_collection
    stalled: list[dict[str, Any]] = []

    async def stall_then_create(name: str, metadata: Any) -> Any:
        if not stalled:  # run A, stalled here while run B does it all
            stalled.append({})
            stalled[0] = await run(parts, job)
        return await create(name, metadata)

    parts.chunks.create_collection = stall_then_create  # type: ignore[method-assign]
    try:
        late = await run(parts, job)
    finally:
        parts.chunks.create_collection = create  # type: ignore[method-assign]
    assert stalled[0]["status"] == "switched"
    assert late["status"] == "switched"
    after = await parts.registry.get(T, col.name)
    assert after.embedding_model == TO
    assert after.chroma_name in await chroma_names(parts)
    await shadow_holds(parts, after)


async def test_a_stalled_run_never_removes_a_newer_version_another_run_copied(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """Run A reads a document's record, stalls; the document is replaced, and run B copies
    the new version and switches. A then found the new version in the shadow (now the
    collection), took it for a stale one and deleted it: the document had no chunks."""
    col = await populated(parts, parsers, 2)
    job = await start(parts, col)
    counts = parts.chunks.version_counts
    stalled: list[dict[str, Any]] = []

    async def stall_then_count(collection_id: str, ids: Any, **kw: Any) -> Any:
        if not stalled:  # run A, stalled here while the others go on
            stalled.append({})
            fresh = await parts.registry.get(T, col.name)
            await ingest(parts, parsers, fresh, {"d0": "d0 replaced meanwhile"})
            stalled[0] = await run(parts, job)
        return await counts(collection_id, ids, **kw)

    parts.chunks.version_counts = stall_then_count  # type: ignore[method-assign]
    try:
        late = await run(parts, job)
    finally:
        parts.chunks.version_counts = counts  # type: ignore[method-assign]
    assert stalled[0]["status"] == "switched"
    assert late["status"] == "switched"
    after = await parts.registry.get(T, col.name)
    held = await shadow_holds(parts, after)
    assert [c.text for c in await parts.chunks.version(after.chroma_id, "d0", held["d0"])] == [
        "d0 replaced meanwhile"
    ]


async def test_a_collection_deleted_as_its_shadow_is_made_leaves_no_chroma_collection(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A delete reads the collection (no shadow named yet), the migration names, makes and
    records its shadow, then the delete removes the collection and its Chroma collection but
    not the shadow it never saw: left in Chroma for good. A shadow is listed to drop from the
    moment it is named now, and dropped once it is nobody's."""
    col = await populated(parts, parsers, 2)
    before = await chroma_names(parts)
    job = await start(parts, col)
    counts, get = parts.chunks.version_counts, parts.registry.get

    async def deleted_with_an_old_view(collection_id: str, ids: Any, **kw: Any) -> Any:
        async def as_read_before(tenant: str, name: str) -> Collection:
            return col  # what the delete read before the shadow was named

        parts.registry.get = as_read_before  # type: ignore[method-assign]
        try:
            await parts.registry.delete(T, col.name)
        finally:
            parts.registry.get = get  # type: ignore[method-assign]
        return await counts(collection_id, ids, **kw)

    parts.chunks.version_counts = deleted_with_an_old_view  # type: ignore[method-assign]
    try:
        with pytest.raises(MigrationStopped):
            await run(parts, job)
    finally:
        parts.chunks.version_counts = counts  # type: ignore[method-assign]
    assert len(await chroma_names(parts) - before) == 1, "the shadow was made, and is left"
    drops = parts.keys.chroma_drops()
    await parts.redis.zadd(drops, dict.fromkeys(await parts.redis.zrange(drops, 0, -1), 0))
    await drain(parts)
    assert await chroma_names(parts) == before - {col.chroma_name}
    assert await parts.redis.zcard(drops) == 0


async def test_a_replica_lagging_past_the_grace_period_reads_the_new_collection(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """Changes made before the switch are read from the former Chroma collection; a replica
    that reaches them after that one was dropped reads them from the new one instead (which
    had every active version at the switch) rather than failing on them for ever."""
    col = await populated(parts, parsers, 2)
    served = ServedCollections(parts.redis, parts.chunks, parts.keys, k1=1.2, b=0.75)
    try:
        index = await served.ensure(col)

        async def write() -> None:
            await ingest(parts, parsers, col, {"mid": "walrus narwhal beluga"})

        job = await start(parts, col)
        assert (await run(parts, job, at_first_copy_step(write)))["status"] == "switched"
        await drain(parts)  # grace 0: the former collection is dropped at once
        assert col.chroma_name not in await chroma_names(parts)
        await served._follow_once()
        assert [chunk for chunk, _ in index.search("narwhal", 3)], "indexed with its chunks"
    finally:
        served.close()


async def test_a_replica_whose_former_collection_is_gone_builds_again(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A lagging replica read a batch of changes made before the switch, all from the former
    Chroma collection, dropped by then: its follower died, for good, and /ready still said
    yes. It builds that collection's index again from the current one now."""
    col = await populated(parts, parsers, 2)
    served = ServedCollections(parts.redis, parts.chunks, parts.keys, k1=1.2, b=0.75)
    xread = parts.redis.xread

    async def one_change_at_a_time(streams: Any, count: int, block: int) -> Any:
        return await xread(streams, count=1, block=block)

    try:
        await served.ensure(col)

        async def write() -> None:
            await ingest(parts, parsers, col, {"mid": "walrus narwhal beluga"})

        job = await start(parts, col)
        assert (await run(parts, job, at_first_copy_step(write)))["status"] == "switched"
        await drain(parts)  # grace 0: the former collection is dropped at once
        served.redis.xread = one_change_at_a_time  # type: ignore[method-assign]
        await served._follow_once()  # the change before the switch, alone
        await served._sync_collections()  # what the follower task does next
        index = served.get(T, col.name)
        assert index is not None
        assert [chunk for chunk, _ in index.search("narwhal", 3)]
        moved = await parts.registry.get(T, col.name)
        assert served.version(moved) is not None
    finally:
        served.redis.xread = xread  # type: ignore[method-assign]
        served.close()


async def test_an_index_built_from_a_collection_read_before_the_switch_follows_the_new_one(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A search that read the collection before a switch built the replica's index from the
    former Chroma collection, with a cursor past the switch: the index never moved, and every
    document written afterwards was read from the wrong collection (found empty)."""
    col = await populated(parts, parsers, 2)
    assert (await run(parts, await start(parts, col)))["status"] == "switched"
    served = ServedCollections(parts.redis, parts.chunks, parts.keys, k1=1.2, b=0.75)
    try:
        index = await served.ensure(col)  # the collection as read before the switch
        moved = await parts.registry.get(T, col.name)
        await ingest(parts, parsers, moved, {"late": "zebra quagga okapi"})
        await served._follow_once()
        assert [chunk for chunk, _ in index.search("quagga", 3)]
        assert served.version(moved) is not None
        assert await served.ensure(col) is index  # an old view of it builds nothing again
    finally:
        served.close()


async def test_a_cancel_racing_the_making_of_the_shadow_leaves_no_chroma_collection(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """The cancel listed the shadow's drop, a worker found nothing to drop (the shadow was
    not made yet) and forgot it, then the run made the shadow: left in Chroma for good."""
    col = await populated(parts, parsers, 2)
    before = await chroma_names(parts)
    job = await start(parts, col)
    create = parts.chunks.create_collection

    async def cancelled_and_drained_first(name: str, metadata: Any) -> Any:
        await parts.reembedding.cancel(T, col.name)
        await drain(parts)
        return await create(name, metadata)

    parts.chunks.create_collection = cancelled_and_drained_first  # type: ignore[method-assign]
    try:
        with pytest.raises(MigrationStopped):
            await run(parts, job)
    finally:
        parts.chunks.create_collection = create  # type: ignore[method-assign]
    await drain(parts)
    assert await chroma_names(parts) == before


async def one_chunk_document(
    parts: IngestComponents, parsers: ParserPool, col: Collection, submission: Submission
) -> tuple[dict[str, Any], StoredChunk]:
    """Submit and ingest a document of one chunk: the job's result and the chunk it stored."""
    [job] = await parts.ingest.submit(T, col.name, [submission])
    payload = await parts.jobs.payload(job.id)
    assert payload is not None
    fresh = await parts.registry.get(T, col.name)
    result = await pipeline(parts, parsers).run(
        job=job, collection=fresh, payload=payload, progress=nothing
    )
    assert submission.document_id is not None
    record = await parts.documents.get(T, col.name, submission.document_id)
    assert record is not None
    [chunk] = await parts.chunks.version(
        fresh.chroma_id, submission.document_id, record.tag, vectors=True
    )
    return result, chunk


async def test_the_header_embedded_setting_shapes_new_versions_and_re_embeddings_alike(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """CHUNK_HEADER_EMBEDDED: a document stored with the header in its vectors is ingested
    again, not "unchanged", once the setting changes, and no vector of the header and text is
    reused for the text alone (reuse is keyed by what each vector embedded). A re-embedding
    embeds as the setting says now."""
    col = await parts.registry.create(T, f"h-{uuid.uuid4().hex[:8]}", FROM)
    text = b"Apples grow on trees in the orchard."
    embedder = MODELS[FROM]
    [with_header, alone] = await embedder.embed_documents(
        ["Orchard notes\n" + text.decode(), text.decode()]
    )

    async def submit_and_run(doc: str) -> tuple[dict[str, Any], StoredChunk]:
        submission = Submission(text, where="d", document_id=doc, title="Orchard notes")
        result, chunk = await one_chunk_document(parts, parsers, col, submission)
        assert chunk.header == "Orchard notes"
        return result, chunk

    parts.settings.chunk_header_embedded = True
    result, chunk = await submit_and_run("fruit")
    assert result["status"] == "created"
    assert chunk.header_embedded
    assert np.allclose(chunk.vector, with_header, atol=1e-5)  # type: ignore[arg-type]

    parts.settings.chunk_header_embedded = False
    # The same text under another name takes the vectors "fruit" has of the same text, and
    # those are of the header and text: none is reused.
    result, chunk = await submit_and_run("copy")
    assert result["same_text_as"] == "fruit"
    assert result["chunks_reused"] == 0
    assert not chunk.header_embedded
    assert np.allclose(chunk.vector, alone, atol=1e-5)  # type: ignore[arg-type]
    result, chunk = await submit_and_run("fruit")
    assert result["status"] == "replaced", "the same bytes, but not the same vectors"
    assert np.allclose(chunk.vector, alone, atol=1e-5)  # type: ignore[arg-type]
    assert (await submit_and_run("fruit"))[0]["status"] == "unchanged"

    parts.settings.chunk_header_embedded = True
    # And the other way: the stored vectors are of the text alone, wanted are the header and
    # text's (which is what those chunks' BM25 text reads: it must not be taken for theirs).
    result, chunk = await submit_and_run("third")
    assert result["same_text_as"] in ("fruit", "copy")
    assert result["chunks_reused"] == 0
    assert chunk.header_embedded
    assert np.allclose(chunk.vector, with_header, atol=1e-5)  # type: ignore[arg-type]

    result = await run(parts, await start(parts, col))
    assert result["status"] == "switched"
    after = await parts.registry.get(T, col.name)
    held = await shadow_holds(parts, after)  # each vector is TO's of what embedded_text says
    for doc in ("fruit", "copy", "third"):
        [copied] = await parts.chunks.version(after.chroma_id, doc, held[doc])
        assert copied.header_embedded
        assert copied.model_revision == MODEL_SPECS[TO].revision
    # The versions' hashes name the former model: the next submission is a new version.
    assert (await submit_and_run("fruit"))[0]["status"] == "replaced"


async def test_vectors_of_an_earlier_revision_of_the_model_are_replaced_and_never_reused(
    parts: IngestComponents, parsers: ParserPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """all-MiniLM-L6-v2-int8's weights went from 8 to 7 bits under the same name: a document
    stored before was "unchanged" when submitted again, and its 8-bit vectors were reused for
    any other document of the same text. Its chunks carry no revision: the next submission
    is a new version, and none of its vectors is reused."""
    col = await parts.registry.create(T, f"r-{uuid.uuid4().hex[:8]}", TO)
    text = b"Pears ripen after they are picked."

    async def submit_and_run(doc: str) -> tuple[dict[str, Any], StoredChunk]:
        submission = Submission(text, where="d", document_id=doc)
        return await one_chunk_document(parts, parsers, col, submission)

    current = MODEL_SPECS[TO]
    assert current.revision
    with monkeypatch.context() as before:  # the software before the revision
        before.setitem(MODEL_SPECS, TO, dataclasses.replace(current, revision=""))
        result, chunk = await submit_and_run("old")
        assert result["status"] == "created"
        assert chunk.model_revision == ""
        assert (await submit_and_run("old"))[0]["status"] == "unchanged"

    result, chunk = await submit_and_run("copy")
    assert result["same_text_as"] == "old"
    assert result["chunks_reused"] == 0
    assert chunk.model_revision == current.revision
    result, chunk = await submit_and_run("old")
    assert result["status"] == "replaced", "the same bytes, but vectors of another model"
    assert chunk.model_revision == current.revision
    assert (await submit_and_run("old"))[0]["status"] == "unchanged"
    result, _ = await submit_and_run("third")
    assert result["chunks_reused"] == result["chunks_created"] == 1


async def refused_as_its_own_model(parts: IngestComponents, col: Collection) -> None:
    with pytest.raises(Conflict) as refused:
        await start(parts, col, col.embedding_model)
    assert refused.value.extra["errors"][0]["field"] == "embedding_model"
    assert "already the collection's model" in refused.value.extra["errors"][0]["message"]


async def stored_before_the_revision(
    parts: IngestComponents, parsers: ParserPool, col: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two documents stored by the software before TO had a revision (no revision on their
    chunks), and one after."""
    current = MODEL_SPECS[TO]
    with monkeypatch.context() as before:
        before.setitem(MODEL_SPECS, TO, dataclasses.replace(current, revision=""))
        for doc in ("a", "b"):
            text = f"Plums of kind {doc} keep for a week.".encode()
            _, chunk = await one_chunk_document(
                parts, parsers, col, Submission(text, where="d", document_id=doc)
            )
            assert chunk.model_revision == ""
    _, chunk = await one_chunk_document(
        parts, parsers, col, Submission(b"Cherries bruise.", where="d", document_id="c")
    )
    assert chunk.model_revision == current.revision


async def every_vector_current(parts: IngestComponents, col: Collection) -> None:
    after = await parts.registry.get(T, col.name)
    assert after.embedding_model == TO
    assert after.chroma_id != col.chroma_id
    held = await shadow_holds(parts, after)
    for doc, tag in held.items():
        [copied] = await parts.chunks.version(after.chroma_id, doc, tag)
        assert copied.model_revision == MODEL_SPECS[TO].revision, doc
    assert not await parts.chunks.holds_other_revision(after.chroma_id, MODEL_SPECS[TO].revision)
    await refused_as_its_own_model(parts, after)


async def test_a_collection_holding_an_earlier_revision_is_re_embedded_with_its_own_model(
    parts: IngestComponents, parsers: ParserPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the upgrade to the 7-bit weights a collection's 8-bit vectors stayed until each
    document was submitted again: a re-embedding to the collection's own model was refused
    (409 "already the collection's model"). It is taken while the collection holds vectors of
    another revision, replaces them all, and is refused again once none is left."""
    col = await parts.registry.create(T, f"r-{uuid.uuid4().hex[:8]}", TO)
    await refused_as_its_own_model(parts, col)  # empty: nothing to bring over
    await stored_before_the_revision(parts, parsers, col, monkeypatch)

    result = await run(parts, await start(parts, col, TO))
    assert result["status"] == "switched"
    assert result["chunks_embedded"] == 3
    await every_vector_current(parts, col)


async def stopped_half_way_by_the_former_software(
    parts: IngestComponents, parsers: ParserPool, monkeypatch: pytest.MonkeyPatch
) -> tuple[Collection, Migration]:
    """A re-embedding of a collection stored before the revision to its own model, which the
    software of the former revision (a worker not yet upgraded) copies one document of, then
    dies (its job dead): the collection, and its stopped migration."""
    col = await parts.registry.create(T, f"r-{uuid.uuid4().hex[:8]}", TO)
    await stored_before_the_revision(parts, parsers, col, monkeypatch)
    job = await start(parts, col, TO)
    parts.settings.reembed_batch_documents = 1
    with monkeypatch.context() as before:
        before.setitem(MODEL_SPECS, TO, dataclasses.replace(MODEL_SPECS[TO], revision=""))
        stopped = await dead_after_first_copy_step(parts, col, job)
    assert await parts.chunks.holds_other_revision(stopped.chroma_id, MODEL_SPECS[TO].revision)
    return col, stopped


async def resumed(parts: IngestComponents, col: Collection, stopped: Migration) -> dict[str, Any]:
    job = await start(parts, await parts.registry.get(T, col.name), TO)
    migration = (await parts.registry.get(T, col.name)).migration
    assert migration is not None
    assert migration.chroma_id == stopped.chroma_id  # the same shadow, resumed
    result = await run(parts, job)
    assert result["status"] == "switched"
    await every_vector_current(parts, col)
    return result


async def test_a_shadow_resumed_after_an_upgrade_copies_again_what_it_holds_of_another_revision(
    parts: IngestComponents, parsers: ParserPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed by the new software, the shadow's version copied by the former one counted as
    held whole: it was skipped and its vectors of the former weights switched in. Only
    vectors of the current revision count as copied now."""
    col, stopped = await stopped_half_way_by_the_former_software(parts, parsers, monkeypatch)
    result = await resumed(parts, col, stopped)
    assert result["chunks_already_copied"] == 0
    assert result["chunks_embedded"] == 3


async def test_a_stopped_re_embedding_to_its_own_model_resumes_with_nothing_else_to_bring_over(
    parts: IngestComponents, parsers: ParserPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every document was submitted again (its vectors now of the current weights), a
    stopped re-embedding to the collection's own model was refused as nothing to do, and its
    shadow stayed until cancelled: it is resumed as any stopped re-embedding is."""
    col, stopped = await stopped_half_way_by_the_former_software(parts, parsers, monkeypatch)
    for doc in ("a", "b"):
        text = f"Plums of kind {doc} keep for a week.".encode()
        result, _ = await one_chunk_document(
            parts, parsers, col, Submission(text, where="d", document_id=doc)
        )
        assert result["status"] == "replaced"
    cleanups = parts.keys.cleanups()  # the replaced versions' grace is over
    await parts.redis.zadd(cleanups, dict.fromkeys(await parts.redis.zrange(cleanups, 0, -1), 0))
    await drain(parts)
    fresh = await parts.registry.get(T, col.name)
    assert not await parts.chunks.holds_other_revision(fresh.chroma_id, MODEL_SPECS[TO].revision)
    assert (await resumed(parts, col, stopped))["chunks_embedded"] == 3
