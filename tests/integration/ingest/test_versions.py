"""Document versions against REAL Redis and Chroma: the switch, deletes, dedup, cleanups.

These are the races a busy ingest runs into — a document re-sent while its first job runs,
quick X -> Y -> X changes, a delete racing a re-upload, a collection deleted under a job —
played out step by step, checking what a reader would see after each step.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from rag_config import IngestSettings
from rag_core.catalog import DEFAULT_NAMESPACE, Collection, DocumentRecord
from rag_core.chroma import ChromaClient
from rag_core.clients import create_redis
from rag_core.embedding.models import model_spec
from rag_ingest.components import IngestComponents
from rag_ingest.documents.store import (
    Cleanup,
    chunk_id,
    content_hash,
    version_tag,
)
from rag_ingest.jobs.model import JobRecord
from rag_ingest.worker.tasks import drain_cleanups

from tests.conftest import Backing

pytestmark = pytest.mark.integration


@pytest.fixture
async def parts(backing: Backing) -> AsyncIterator[IngestComponents]:
    settings = IngestSettings(
        _env_file=None,
        redis_url=backing.redis_url,
        chroma_host="127.0.0.1",
        chroma_port=backing.chroma_port,
        redis_prefix=f"t{uuid.uuid4().hex[:12]}",
        version_grace_seconds=0,
    )
    redis = create_redis(settings, settings)
    chroma = ChromaClient(settings, settings)
    built = IngestComponents.build(settings, redis, chroma, model_spec)
    yield built
    await chroma.close()
    await redis.aclose()


@dataclass
class Change:
    """One requested change of a document, as the API would register it."""

    job: JobRecord
    text: str

    @property
    def tag(self) -> str:
        return version_tag(self.job.sequence)

    def cleanup(self, collection: Collection) -> Cleanup:
        assert self.job.document_id is not None
        return Cleanup(
            DEFAULT_NAMESPACE,
            collection.name,
            collection.chroma_id,
            self.job.document_id,
            self.tag,
            self.job.id,
        )


async def _collection(parts: IngestComponents) -> Collection:
    return await parts.registry.create(f"v-{uuid.uuid4().hex[:8]}", "all-MiniLM-L6-v2")


async def _request(parts: IngestComponents, col: Collection, doc: str, text: str) -> Change:
    job = JobRecord(
        id=uuid.uuid4().hex,
        kind="ingest",
        collection=col.name,
        document_id=doc,
        sequence=await parts.documents.next_sequence(col.name, doc),
    )
    await parts.jobs.create(job, text.encode())
    return Change(job, text)


async def _write_chunks(parts: IngestComponents, col: Collection, change: Change) -> list[str]:
    """What the worker does before the switch: reserve the cleanup, upsert the chunks."""
    doc = change.job.document_id
    assert doc is not None
    await parts.documents.reserve_cleanup(change.cleanup(col), time.time())
    pieces = change.text.split()
    ids = [chunk_id(doc, change.tag, i) for i in range(len(pieces))]
    vectors = np.random.default_rng(0).random((len(pieces), 384), dtype=np.float32)
    await parts.chroma.upsert(
        col.chroma_id,
        ids,
        vectors,
        pieces,
        [{"_doc": doc, "_ver": change.tag, "_pos": i} for i in range(len(pieces))],
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
    outcome = await parts.documents.switch_to(col.name, col.chroma_id, record, change.cleanup(col))
    return outcome.status


async def _visible(parts: IngestComponents, col: Collection, doc: str) -> list[str]:
    """What a reader sees: the chunks of the active version, in order."""
    record = await parts.documents.get(col.name, doc)
    if record is None:
        return []
    rows = await parts.chroma.get(
        col.chroma_id, where={"$and": [{"_doc": doc}, {"_ver": record.tag}]}
    )
    order = sorted(range(len(rows.ids)), key=lambda i: int(rows.metadatas[i]["_pos"]))
    return [rows.documents[i] or "" for i in order]


async def _stored_tags(parts: IngestComponents, col: Collection, doc: str) -> set[str]:
    rows = await parts.chroma.get(col.chroma_id, where={"_doc": doc}, documents=False)
    return {str(m["_ver"]) for m in rows.metadatas}


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
    removed = await parts.documents.remove(col.name, col.chroma_id, "d")
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
    found = await parts.registry.get(col.name)
    assert (found.document_count, found.chunk_count) == (1, 3)


async def test_same_content_under_another_id_is_a_duplicate_and_keeps_the_index(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    a = await _request(parts, col, "a", "shared text")
    await _write_chunks(parts, col, a)
    assert await _switch(parts, col, a) == "created"
    b = await _request(parts, col, "b", "shared text")
    await _write_chunks(parts, col, b)
    assert await _switch(parts, col, b) == "duplicate"
    assert await parts.documents.get(col.name, "b") is None
    digest = content_hash(b"shared text")
    assert await parts.documents.owner_of(col.name, digest) == "a"

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
    assert await parts.documents.owner_of(col.name, digest) == "a"


async def test_a_switch_after_its_collection_was_deleted_writes_nothing(
    parts: IngestComponents,
) -> None:
    col = await _collection(parts)
    change = await _request(parts, col, "d", "late words")
    await _write_chunks(parts, col, change)
    await parts.registry.delete(col.name)
    recreated = await parts.registry.create(col.name, "all-MiniLM-L6-v2")
    assert await _switch(parts, col, change) == "gone"  # its chunks went to the old one
    assert await parts.documents.get(col.name, "d") is None
    found = await parts.registry.get(col.name)
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
    stale = await parts.jobs.get(job.id)
    assert stale is not None
    stale.state, stale.worker = "succeeded", "worker-a"
    assert not await parts.jobs.save(stale, expect_states=("running",), expect_worker="worker-a")
    current = await parts.jobs.get(job.id)
    assert current is not None
    assert current.state == "queued"
    # A write for an earlier run (the job was retried since) is refused too.
    job.run, job.state = 2, "queued"
    assert await parts.jobs.save(job, expect_run=1)
    job.run = 1
    assert not await parts.jobs.save(job)
    queued = await parts.jobs.find(state="queued", collection=col.name)
    assert [j.id for j in queued] == [job.id]
    assert await parts.jobs.find(state="running", collection=col.name) == []
