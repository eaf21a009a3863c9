"""The ingest state machine as a whole, against REAL Redis and Chroma (issue 14).

Hypothesis plays random sequences of what tenants and workers do, in three collections whose
tenant and collection names could collide if keys were built naively (``acme``/``x-hbk``,
``acme-x``/``hbk``, and the default tenant's ``hbk``):

- delete a collection, re-create it under the same name;
- create, replace or delete a document (two fixed ids), or send one text under both ids;
- deliver a job to a worker, which runs it to the end or stalls at a stage (before writing,
  after listing its chunks for cleanup, after writing them); deliver the stalled job again
  elsewhere (its heartbeat ran out), resume the stalled run; deliver an ended job again;
  run one job twice interleaved (A stalls, B completes, A carries on);
- re-embed a collection with the other model (a whole migration: copy, catch up, switch),
  also while a paused job stands between writing its chunks and switching them in;
- let every listed cleanup fall due (with a grace period; without one they are due at once).
  After every step a worker drains the cleanups that are due, as reconcilers do.

After every step it compares what readers would see with a model of it:

- every live document has exactly its active version's chunks (ids and count by ``_doc`` /
  ``_ver``), with its own text and metadata, and its collection's counters agree; two ids
  sent with the same text are two documents;
- distinct collections, in whatever tenant, are distinct Chroma collections;
- a step taken for one collection of one tenant leaves every other collection, of that
  tenant or another, exactly as it was (records and chunks);
- once every job has ended and every cleanup is drained (at teardown), no chunk is left
  that is not part of an active version, every chunk's vector is its own text's by its
  collection's model, and Chroma holds no collection but the live ones (no former collection
  of a re-embedding, no shadow).

Everything goes through the product's own code: ``CollectionRegistry``, ``IngestService``,
``DocumentStore``, ``ReembedService``, the worker's task functions (``ingest_document``,
``reembed_collection``, ``drain_cleanups``) with the real pipeline and the local MiniLM
embedders (fp32 and int8). The one test hook is a pipeline whose
progress callback can wait at a stage. Sequences that once failed are replayed by
``test_known_sequence`` on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import pytest
from arq import Retry
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rag_config import IngestSettings
from rag_core.catalog import DEFAULT_NAMESPACE, Collection, DocumentRecord
from rag_core.chroma import ChromaClient
from rag_core.chunks import StoredChunk, chunk_id, decode
from rag_core.clients import create_redis
from rag_core.embedding.models import EmbedderFactory
from rag_core.errors import Conflict, NotFound
from rag_ingest.components import IngestComponents
from rag_ingest.jobs.model import FINAL_STATES
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.submissions import Submission
from rag_ingest.versions import content_hash
from rag_ingest.worker.context import BatchedEmbedders, WorkerContext
from rag_ingest.worker.pipeline import IngestPipeline, Progress
from rag_ingest.worker.tasks import drain_cleanups, ingest_document, reembed_collection

from tests.conftest import Backing

pytestmark = pytest.mark.integration

T = TypeVar("T")
Slot = tuple[str, str]  # (namespace, collection)
MODEL = "all-MiniLM-L6-v2"
OTHER_MODEL = {MODEL: "all-MiniLM-L6-v2-int8", "all-MiniLM-L6-v2-int8": MODEL}
# Tenant and collection names that read the same when joined with '-' ("acme-x-hbk"), and
# the default tenant with a collection named as another tenant's.
SLOTS: tuple[Slot, ...] = (("acme-x", "hbk"), (DEFAULT_NAMESPACE, "hbk"), ("acme", "x-hbk"))
DOCUMENT_IDS = ("d1", "d2")
WORDS = ("alpha", "beta")
# Where a paused worker waits: before writing anything, after listing its chunks for
# cleanup, and after writing them (just before the switch).
STAGES = ("parsing", "embedding", "publishing")
WORKERS = ("worker-a", "worker-b")


def own_text(document_id: str, word: str) -> str:
    return f"{word} notes of {document_id}."


def shared_text(word: str) -> str:
    return f"{word} notes shared by two ids."


def metadata_of(namespace: str, document_id: str) -> dict[str, Any]:
    return {"owner": f"{namespace}/{document_id}"}


def note(outcome: str) -> None:
    """Count an outcome in hypothesis' statistics (replays run outside hypothesis)."""
    if currently_in_test_context():
        event(outcome)


# The test hook: a worker whose run of a job waits at a stage --------------------------------
@dataclass
class Hold:
    stage: str
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class PausablePipeline(IngestPipeline):
    """The real pipeline; a run of a job listed in ``holds`` waits at that stage (once), right
    after its progress was recorded, until released."""

    holds: dict[str, Hold]

    async def run(self, *, job: Any, collection: Any, payload: bytes, progress: Progress) -> Any:
        hold = self.holds.get(job.id)
        if hold is None:
            return await super().run(
                job=job, collection=collection, payload=payload, progress=progress
            )

        async def pausing(stage: str, fraction: float) -> None:
            await progress(stage, fraction)
            if stage == hold.stage and self.holds.get(job.id) is hold:
                del self.holds[job.id]
                hold.reached.set()
                await hold.released.wait()

        return await super().run(job=job, collection=collection, payload=payload, progress=pausing)


# What readers see ----------------------------------------------------------------------------
@dataclass
class SlotView:
    """One collection as stored: its Redis records and its chunks in Chroma."""

    fields: dict[bytes, bytes]
    collection: Collection | None
    records: dict[str, DocumentRecord]
    chunks: list[StoredChunk] | None  # None: it has no Chroma collection

    def fingerprint(self) -> Any:
        return (
            self.fields,
            {d: (r.tag, r.version, r.content_hash, r.metadata) for d, r in self.records.items()},
            None
            if self.chunks is None
            else sorted(
                (c.id, c.document_id, c.version, c.text, str(c.metadata.get("owner")))
                for c in self.chunks
            ),
        )


# The model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRef:
    """One requested change of a document, as the model knows it."""

    job_id: str
    slot: Slot
    generation: int
    document_id: str
    text: str
    token: int

    def __repr__(self) -> str:  # what hypothesis prints in a failing sequence
        return f"JobRef({'/'.join(self.slot)}/{self.document_id}: {self.text!r})"


@dataclass
class SlotModel:
    live: bool = False
    generation: int = 0
    chroma_id: str = ""
    embedding_model: str = MODEL
    active: dict[str, str] = field(default_factory=dict)  # document id -> text readers see
    newest: dict[str, int] = field(default_factory=dict)  # document id -> newest request


@dataclass
class Paused:
    job: JobRef
    hold: Hold
    task: asyncio.Task[str]


@dataclass
class Env:
    """What every example shares: one event loop and the clients bound to it."""

    loop: asyncio.AbstractEventLoop
    base: IngestSettings
    redis: Any
    chroma: ChromaClient
    embedders: BatchedEmbedders
    parsers: ParserPool
    vectors: dict[tuple[str, str], Any] = field(default_factory=dict)  # (model, text) -> vector

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


class IngestMachine(RuleBasedStateMachine):
    env: ClassVar[Env]
    pending = Bundle("pending")  # requested changes no worker has taken yet
    delivered = Bundle("delivered")

    def __init__(self) -> None:
        super().__init__()
        # Each example in its own keys (and so its own Chroma collections).
        self.prefix = f"sm{uuid.uuid4().hex[:10]}"
        self.workers: dict[str, WorkerContext] = {}
        self.model = {slot: SlotModel() for slot in SLOTS}
        self.tokens = 0
        self.all_jobs: list[JobRef] = []
        self.paused: Paused | None = None
        self.broken = False
        self.view: dict[Slot, SlotView] = {}
        self.grace = 0
        self.collection_changes = 0

    @initialize(grace=st.sampled_from([0, 3600]))
    def start(self, grace: int) -> None:
        """Every collection exists at the start (deleting and re-creating them are steps like
        any other). With no grace a replaced version's chunks are due for cleanup at once;
        with a long one, only when a step lets the grace period pass."""
        self.settings = self.env.base.model_copy(
            update={"redis_prefix": self.prefix, "version_grace_seconds": grace}
        )
        self.workers = {name: self._worker(name) for name in WORKERS}
        self.grace = grace
        self.view = self._do(self._read())
        for slot in SLOTS:
            self.delete_or_recreate_collection(slot)
        self.collection_changes = 0

    def _worker(self, name: str) -> WorkerContext:
        env = self.env
        context = WorkerContext.create(
            self.settings,
            env.redis,
            env.chroma,
            env.embedders,
            env.parsers,
            pipeline=PausablePipeline,
            worker_id=name,
        )
        assert isinstance(context.pipeline, PausablePipeline)
        context.pipeline.holds = {}
        return context

    def parts(self, namespace: str) -> IngestComponents:
        return self.workers["worker-a"]  # one set of stores serves every tenant

    # Steps -----------------------------------------------------------------------------------
    def _do(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step's work; remember a failure so teardown does not pile another on it."""
        try:
            return self.env.run(coro)
        except BaseException:
            self.broken = True
            raise

    def _step(self, acting: Slot | None, work: Coroutine[Any, Any, T]) -> T:
        """Do ``work`` for the collection ``acting``: every other collection, of any tenant,
        must look exactly as before (``None``: a step for all of them, such as a drain).
        Then a worker drains the cleanups that are due, as workers do all the time."""

        async def run() -> T:
            result = await work
            after = await self._read()
            for slot in SLOTS:
                if acting is not None and slot != acting:
                    before, now = self.view[slot].fingerprint(), after[slot].fingerprint()
                    assert before == now, (
                        f"a step on {'/'.join(acting)} changed {'/'.join(slot)}: {before} -> {now}"
                    )
            if acting is not None and await self._drain_due():
                after = await self._read()
            self.view = after
            return result

        return self._do(run())

    async def _read(self, *, vectors: bool = False) -> dict[Slot, SlotView]:
        views = await asyncio.gather(*(self._read_slot(slot, vectors) for slot in SLOTS))
        return dict(zip(SLOTS, views, strict=True))

    async def _read_slot(self, slot: Slot, vectors: bool) -> SlotView:
        namespace, name = slot
        parts = self.parts(namespace)
        fields = await parts.redis.hgetall(parts.keys.collection(namespace, name))  # type: ignore[misc]  # redis-py's async typing
        collection = await parts.registry.find(namespace, name)
        records = {
            r.id: r for r in await parts.documents.get_many(namespace, name, list(DOCUMENT_IDS))
        }
        chroma_id = fields.get(b"chroma_id", b"").decode()
        chunks = None
        if chroma_id:
            try:
                rows = await self.env.chroma.get(chroma_id, embeddings=vectors)
            except Exception:  # its Chroma collection is gone
                rows = None
            if rows is not None:
                chunks = [
                    decode(i, t, m, None if rows.embeddings is None else rows.embeddings[n])
                    for n, (i, m, t) in enumerate(
                        zip(rows.ids, rows.metadatas, rows.documents, strict=True)
                    )
                ]
        return SlotView(fields, collection, records, chunks)

    # The model -------------------------------------------------------------------------------
    def _request(self, slot: Slot, document_id: str) -> int:
        self.tokens += 1
        self.model[slot].newest[document_id] = self.tokens
        return self.tokens

    def _apply(self, job: JobRef) -> None:
        """A job ended: its change is what readers see if it is still the newest requested
        of its document, in the same incarnation of its collection."""
        model = self.model[job.slot]
        if (
            model.live
            and model.generation == job.generation
            and model.newest.get(job.document_id) == job.token
        ):
            model.active[job.document_id] = job.text

    async def _deliver(self, worker: str, job: JobRef) -> str:
        ctx = {"rag": self.workers[worker], "job_try": 1}
        try:
            return await ingest_document(ctx, job.job_id)
        except Retry:
            return "retry"

    async def _after_delivery(self, job: JobRef, run: str = "") -> None:
        record = await self.parts(job.slot[0]).jobs.get(job.slot[0], job.job_id)
        assert record is not None, f"{job}: its job record is gone"
        outcome = (record.result or {}).get("status") or record.error_stage or ""
        note(f"{run or 'delivery'}: job {record.state} {outcome}".rstrip())
        if record.state in FINAL_STATES:
            self._apply(job)

    # Rules: collections ----------------------------------------------------------------------
    # A few per example: Chroma collections are slow to make, and more add little.
    @precondition(lambda self: self.collection_changes < 3)
    @rule(slot=st.sampled_from(SLOTS))
    def delete_or_recreate_collection(self, slot: Slot) -> None:
        """Delete the collection if it exists, else create it again (same name)."""
        namespace, name = slot
        model = self.model[slot]
        self.collection_changes += 1

        async def work() -> None:
            registry = self.parts(namespace).registry
            if model.live:
                await registry.delete(namespace, name)
                model.live, model.active = False, {}
                with pytest.raises(NotFound):
                    await registry.get(namespace, name)
                return
            created = await registry.create(namespace, name, MODEL)
            model.live, model.generation = True, model.generation + 1
            model.chroma_id, model.active, model.newest = created.chroma_id, {}, {}
            model.embedding_model = MODEL
            with pytest.raises(Conflict):
                await registry.create(namespace, name, MODEL)

        self._step(slot, work())

    @precondition(lambda self: self.collection_changes < 3)
    @rule(slot=st.sampled_from(SLOTS), worker=st.sampled_from(WORKERS))
    def reembed(self, slot: Slot, worker: str) -> None:
        """POST .../reembed with the other model, and a worker runs the migration to its
        switch while every other step stands where it is (a paused job included)."""
        namespace, name = slot
        model = self.model[slot]
        self.collection_changes += 1

        async def work() -> None:
            parts = self.parts(namespace)
            target = OTHER_MODEL[model.embedding_model]
            if not model.live:
                with pytest.raises(NotFound):
                    await parts.reembedding.start(namespace, name, target)
                return
            job = await parts.reembedding.start(namespace, name, target)
            state = await reembed_collection({"rag": self.workers[worker], "job_try": 1}, job.id)
            record = await parts.jobs.get(namespace, job.id)
            assert state == "succeeded", record
            assert record is not None
            assert (record.result or {}).get("status") == "switched", record
            found = await parts.registry.get(namespace, name)
            assert found.embedding_model == target
            assert found.migration is None
            assert found.lineage[-1] == model.chroma_id
            model.chroma_id, model.embedding_model = found.chroma_id, target
            note(f"re-embedded with a paused job: {self.paused is not None}")

        self._step(slot, work())

    # Rules: documents ------------------------------------------------------------------------
    @rule(
        target=pending,
        slot=st.sampled_from(SLOTS),
        document_id=st.sampled_from(DOCUMENT_IDS),
        word=st.sampled_from(WORDS),
    )
    def put_document(self, slot: Slot, document_id: str, word: str) -> Any:
        """POST it (first time) or PUT it (again): a queued job."""
        return self._submit(slot, [document_id], own_text(document_id, word))

    @rule(target=pending, slot=st.sampled_from(SLOTS), word=st.sampled_from(WORDS))
    def put_same_text_under_two_ids(self, slot: Slot, word: str) -> Any:
        """One request names two documents with identical text (issue 14 defect 10)."""
        return self._submit(slot, list(DOCUMENT_IDS), shared_text(word))

    def _submit(self, slot: Slot, document_ids: list[str], text: str) -> Any:
        namespace, name = slot
        model = self.model[slot]
        items = [
            Submission(
                payload=text.encode(),
                where=f"documents[{i}]",
                document_id=document_id,
                content_type="text/plain; charset=utf-8",
                metadata=metadata_of(namespace, document_id),
            )
            for i, document_id in enumerate(document_ids)
        ]

        async def work() -> Any:
            service = self.parts(namespace).ingest
            if not model.live:
                with pytest.raises(NotFound):
                    await service.submit(namespace, name, items)
                return multiple()
            accepted = await service.submit(namespace, name, items)
            jobs = [
                JobRef(
                    entry.id,
                    slot,
                    model.generation,
                    document_id,
                    text,
                    self._request(slot, document_id),
                )
                for document_id, entry in zip(document_ids, accepted, strict=True)
            ]
            self.all_jobs += jobs
            return multiple(*jobs)

        return self._step(slot, work())

    @rule(slot=st.sampled_from(SLOTS), document_id=st.sampled_from(DOCUMENT_IDS))
    def delete_document(self, slot: Slot, document_id: str) -> None:
        """DELETE it, as the route does: invisible at once, its chunks left to cleanup."""
        namespace, name = slot
        model = self.model[slot]

        async def work() -> None:
            parts = self.parts(namespace)
            if not model.live:
                with pytest.raises(NotFound):
                    await parts.registry.get(namespace, name)
                return
            await parts.registry.get(namespace, name)
            outcome = await parts.documents.remove(namespace, name, document_id)
            expected = "deleted" if document_id in model.active else "missing"
            assert outcome.status == expected, f"DELETE {document_id}: {outcome.status}"
            # It supersedes every change of the document still in flight.
            self._request(slot, document_id)
            model.active.pop(document_id, None)

        self._step(slot, work())

    # Rules: workers --------------------------------------------------------------------------
    @rule(
        target=delivered,
        job=consumes(pending),
        worker=st.sampled_from(WORKERS),
        stall_at=st.sampled_from((None, *STAGES)),
    )
    def deliver(self, job: JobRef, worker: str, stall_at: str | None) -> JobRef:
        """arq hands the job to a worker, which runs it to the end — or, if ``stall_at`` is
        given and no other worker is stalled, stops at that stage while later steps happen
        (a worker paused past its heartbeat)."""

        async def work() -> None:
            if stall_at is None or self.paused is not None:
                await self._run_to_end(worker, job)
                return
            hold = Hold(stall_at)
            task = await self._pause(job, hold, worker)
            if task is not None:
                self.paused = Paused(job, hold, task)
            else:
                await self._after_delivery(job)

        self._step(job.slot, work())
        return job

    @rule(job=delivered, worker=st.sampled_from(WORKERS))
    def deliver_again(self, job: JobRef, worker: str) -> None:
        """The same job delivered once more (at-least-once): after a run of it ended, or
        while one is stalled."""
        self._step(job.slot, self._run_to_end(worker, job))

    @precondition(lambda self: self.paused is not None)
    @rule(worker=st.sampled_from(WORKERS))
    def deliver_stalled_job_again(self, worker: str) -> None:
        """The stalled worker's heartbeat ran out: its job is delivered again and runs to the
        end while the stalled run still stands where it stopped."""
        assert self.paused is not None
        job = self.paused.job
        self._step(job.slot, self._run_to_end(worker, job, "while stalled"))

    @precondition(lambda self: self.paused is not None)
    @rule()
    def resume_stalled_worker(self) -> None:
        paused = self.paused
        assert paused is not None
        self.paused = None

        async def work() -> None:
            paused.hold.released.set()
            note(f"resumed at {paused.hold.stage}: {await paused.task}")
            await self._after_delivery(paused.job)

        self._step(paused.job.slot, work())

    @rule(target=delivered, job=consumes(pending), stage=st.sampled_from(STAGES))
    def deliver_twice_interleaved(self, job: JobRef, stage: str) -> JobRef:
        """Worker A reaches ``stage`` and stalls; worker B runs the same job to the end; then
        A carries on from where it stood."""

        async def work() -> None:
            hold = Hold(stage)
            first = await self._pause(job, hold, "worker-a")
            await self._run_to_end("worker-b", job, "interleaved B" if first else "")
            if first is not None:
                hold.released.set()
                note(f"interleaved A at {stage}: {await first}")
                await self._after_delivery(job)

        self._step(job.slot, work())
        return job

    async def _run_to_end(self, worker: str, job: JobRef, run: str = "") -> None:
        await self._deliver(worker, job)
        await self._after_delivery(job, run)

    async def _pause(self, job: JobRef, hold: Hold, worker: str) -> asyncio.Task[str] | None:
        """Start ``worker`` on ``job``: the running task if it stalled at the hold, None if
        it ended first (nothing to do, or it stopped before that stage)."""
        pipeline = self.workers[worker].pipeline
        assert isinstance(pipeline, PausablePipeline)
        holds = pipeline.holds  # shared by the copies it makes for each tenant
        holds[job.job_id] = hold
        task = asyncio.ensure_future(self._deliver(worker, job))
        reached = asyncio.ensure_future(hold.reached.wait())
        await asyncio.wait({task, reached}, return_when=asyncio.FIRST_COMPLETED)
        if hold.reached.is_set():
            return task
        reached.cancel()
        holds.pop(job.job_id, None)
        await task
        return None

    # Rules: cleanups -------------------------------------------------------------------------
    @precondition(lambda self: self.grace > 0)  # without one, every step ends with a drain
    @rule()
    def let_the_grace_period_pass(self) -> None:
        """Every listed cleanup falls due at once; a worker drains them."""
        self._step(None, self._drain())

    async def _drain(self) -> None:
        keys = self.workers["worker-a"].keys
        for key in (keys.cleanups(), keys.chroma_drops()):
            members = await self.env.redis.zrange(key, 0, -1)
            if members:
                await self.env.redis.zadd(key, dict.fromkeys(members, 0), xx=True)
        await self._drain_due()

    async def _drain_due(self) -> int:
        """What a worker's reconciler does every few seconds; how many chunks went."""
        return await drain_cleanups({"rag": self.workers["worker-a"], "job_try": 1})

    # Invariants ------------------------------------------------------------------------------
    @invariant()
    def readers_see_exactly_the_active_versions(self) -> None:
        try:
            self._check(self.view)
        except BaseException:
            self.broken = True
            raise

    def _check(self, view: dict[Slot, SlotView]) -> None:
        live = [slot for slot in SLOTS if self.model[slot].live]
        chroma_ids = [self.model[slot].chroma_id for slot in live]
        assert len(set(chroma_ids)) == len(chroma_ids), (
            "collections share a Chroma collection: "
            + ", ".join(f"{'/'.join(slot)}={self.model[slot].chroma_id}" for slot in live)
        )
        for slot in SLOTS:
            if self.model[slot].live:
                self._check_collection(slot, view[slot])
            else:
                assert view[slot].collection is None, f"{'/'.join(slot)} was deleted"

    def _check_collection(self, slot: Slot, view: SlotView) -> None:
        namespace, _ = slot
        model = self.model[slot]
        where = "/".join(slot)
        assert view.collection is not None, f"{where} is gone"
        assert view.collection.chroma_id == model.chroma_id, f"{where} changed Chroma collection"
        assert view.chunks is not None, f"{where}: its Chroma collection is gone"
        for document_id, text in model.active.items():
            others = [d for d, t in model.active.items() if t == text and d != document_id]
            assert document_id in view.records or not others, (
                f"{where}/{document_id} was sent with the same text as {others}, under its own "
                "id, and is no document (issue 14 defect 10)"
            )
        chunk_total = 0
        for document_id in DOCUMENT_IDS:
            record = view.records.get(document_id)
            expected = model.active.get(document_id)
            if expected is None:
                assert record is None, f"{where}/{document_id} is visible; it should not be"
                continue
            assert record is not None, f"{where}/{document_id} is missing; expected {expected!r}"
            assert record.content_hash == content_hash(expected.encode()), (
                f"{where}/{document_id}: the active version is not {expected!r}"
            )
            assert record.metadata == metadata_of(namespace, document_id), (
                f"{where}/{document_id} has metadata {record.metadata}"
            )
            # A reader filtering by the active tag gets exactly this version's chunks.
            rows = sorted(
                (
                    c
                    for c in view.chunks
                    if c.document_id == document_id and c.version == record.tag
                ),
                key=lambda c: c.position,
            )
            ids = {chunk_id(document_id, record.tag, p) for p in range(record.chunk_count)}
            assert record.chunk_count > 0, f"{where}/{document_id} has no chunks"
            assert {c.id for c in rows} == ids, (
                f"{where}/{document_id}: its active version {record.tag} has chunks "
                f"{sorted(c.id for c in rows)}, expected {sorted(ids)}"
            )
            for chunk in rows:
                assert chunk.content_hash == record.content_hash, chunk
                assert chunk.metadata.get("owner") == metadata_of(namespace, document_id)["owner"]
            text = " ".join(c.text for c in rows)
            assert text.split() == expected.split(), f"{where}/{document_id} reads {text!r}"
            chunk_total += record.chunk_count
        counters = (view.collection.document_count, view.collection.chunk_count)
        assert counters == (len(model.active), chunk_total), (
            f"{where}: (documents, chunks) are {counters}, expected "
            f"{(len(model.active), chunk_total)}"
        )

    async def _check_settled(self) -> None:
        """No orphans, and every chunk's vector is that of its own text."""
        view = await self._read(vectors=True)
        self._check(view)
        for slot in SLOTS:
            if not self.model[slot].live:
                continue
            # The embedder itself, in one call (not the pipeline's batching wrapper).
            used = self.model[slot].embedding_model
            known = {text for model, text in self.env.vectors if model == used}
            texts = sorted({c.text for c in view[slot].chunks or []} - known)
            if texts:
                vectors = await self.env.embedders.factory.get(used).embed_documents(texts)
                self.env.vectors.update(((used, t), v) for t, v in zip(texts, vectors, strict=True))
            records, chunks = view[slot].records, view[slot].chunks or []
            active = {(d, r.tag) for d, r in records.items()}
            orphans = sorted({(c.document_id, c.version) for c in chunks} - active)
            left = await self.env.redis.zrange(self.workers["worker-a"].keys.cleanups(), 0, -1)
            assert not orphans, (
                f"{'/'.join(slot)}: after every job ended and every cleanup was drained, chunks "
                f"of (document, version) {orphans} remain; cleanups still listed: {left}"
            )
            for chunk in chunks:
                similarity = float(np.dot(chunk.vector, self.env.vectors[used, chunk.text]))
                assert similarity > 0.999, f"{chunk.id} ({chunk.text!r}) has another's vector"
        # No Chroma collection of this example's but the live ones' (none left by a
        # re-embedding, none by a deleted collection).
        listed = await self.env.chroma._request(
            "GET", "/api/v2/tenants/default_tenant/databases/default_database/collections"
        )
        ours = {c["id"] for c in listed if c["name"].startswith(f"{self.prefix}-")}
        live = {self.model[slot].chroma_id for slot in SLOTS if self.model[slot].live}
        assert ours == live, f"Chroma holds {sorted(ours - live)} besides the live collections"

    # Teardown --------------------------------------------------------------------------------
    def teardown(self) -> None:
        if not self.workers:
            return  # it never started
        try:
            if not self.broken:
                self.env.run(self._settle())
        finally:
            self.env.run(self._clean_up())

    async def _settle(self) -> None:
        """Every job ends, every cleanup falls due and is drained."""
        if self.paused is not None:
            self.paused.hold.released.set()
            await self.paused.task
            await self._after_delivery(self.paused.job)
            self.paused = None
        for job in self.all_jobs:
            record = await self.parts(job.slot[0]).jobs.get(job.slot[0], job.job_id)
            if record is not None and record.state not in FINAL_STATES:
                await self._deliver("worker-a", job)
                await self._after_delivery(job)
        await self._drain()
        await self._drain()
        await self._check_settled()

    async def _clean_up(self) -> None:
        if self.paused is not None:
            self.paused.task.cancel()
            await asyncio.gather(self.paused.task, return_exceptions=True)
        for (namespace, name), model in self.model.items():
            if model.live:
                with contextlib.suppress(Exception):
                    await self.parts(namespace).registry.delete(namespace, name)
        redis = self.env.redis
        doomed = [k async for k in redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
        doomed += [f"arq:job:{job.job_id}.1" for job in self.all_jobs]
        for start in range(0, len(doomed), 500):
            await redis.delete(*doomed[start : start + 500])


# Running it ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = IngestSettings(
        _env_file=None,
        redis_url=backing.redis_url,
        chroma_host="127.0.0.1",
        chroma_port=backing.chroma_port,
        data_dir=str(tmp_path_factory.mktemp("data")),
        # Long: a replaced version stays readable until a step lets its cleanup fall due.
        version_grace_seconds=3600,
        embed_threads=1,
    )
    loop = asyncio.new_event_loop()
    factory = EmbedderFactory(base)
    for model in OTHER_MODEL:
        factory.get(model)  # builds the ONNX models once (cached in the data dir)
    parsers = ParserPool(workers=1, max_memory_mb=0, timeout_seconds=30)

    async def clients() -> tuple[Any, ChromaClient]:
        return create_redis(base, base), ChromaClient(base, base)

    redis, chroma = loop.run_until_complete(clients())
    try:
        yield Env(loop, base, redis, chroma, BatchedEmbedders(factory, 64, 1), parsers)
    finally:
        loop.run_until_complete(chroma.close())
        loop.run_until_complete(redis.aclose())
        loop.close()
        parsers.close()


# A passing run takes well under a minute. A failing one goes on shrinking the sequence (each
# try replays it against Redis and Chroma) for up to about five minutes: that minimal
# sequence is the useful output, so it gets the time.
@pytest.mark.timeout(420)
def test_ingest_state_machine(env: Env) -> None:
    IngestMachine.env = env
    run_state_machine_as_test(
        IngestMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            database=None,  # nothing written into the shared tree
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# Sequences found by the machine (or that broke the code once), replayed on every run ---------
ACME_X, DEFAULT_HBK = ("acme-x", "hbk"), (DEFAULT_NAMESPACE, "hbk")


class Replay:
    """Drives the machine through fixed steps, checking the invariant after each."""

    def __init__(self) -> None:
        self.machine = IngestMachine()

    def step(self, name: str, **arguments: Any) -> list[Any]:
        result = getattr(self.machine, name)(**arguments)
        self.machine.readers_see_exactly_the_active_versions()
        return list(result.values) if isinstance(result, MultipleResults) else [result]


def _colliding_names(r: Replay) -> None:
    """acme + x-hbk and acme-x + hbk once met in one Chroma collection (defect 1)."""
    r.step("start", grace=0)


def _drain_judges_the_right_tenant(r: Replay) -> None:
    """A drain judged acme-x's stalled job by the default tenant's records (defect 2)."""
    r.step("start", grace=0)
    [job] = r.step("put_document", slot=ACME_X, document_id="d1", word="alpha")
    r.step("put_document", slot=DEFAULT_HBK, document_id="d1", word="alpha")
    r.step("put_document", slot=DEFAULT_HBK, document_id="d1", word="beta")
    r.step("deliver", job=job, worker="worker-a", stall_at="publishing")
    r.step("resume_stalled_worker")


def _second_run_keeps_the_live_chunks(r: Replay) -> None:
    """A stalled run found its own version switched in and deleted its chunks (defect 3)."""
    r.step("start", grace=0)
    [job] = r.step("put_document", slot=ACME_X, document_id="d1", word="alpha")
    r.step("deliver_twice_interleaved", job=job, stage="publishing")


def _same_text_under_two_ids(r: Replay) -> None:
    """Only one of two named documents with the same text was kept (defect 10)."""
    r.step("start", grace=0)
    for job in r.step("put_same_text_under_two_ids", slot=ACME_X, word="alpha"):
        r.step("deliver", job=job, worker="worker-a", stall_at=None)


def _stalled_run_of_a_superseded_change(r: Replay) -> None:
    """A run stalled after listing its chunks for cleanup, resuming after another run of
    the job was superseded (and took the listing away), writes chunks nobody removes."""
    r.step("start", grace=0)
    [job] = r.step("put_document", slot=ACME_X, document_id="d1", word="alpha")
    r.step("put_document", slot=ACME_X, document_id="d1", word="beta")
    r.step("deliver_twice_interleaved", job=job, stage="embedding")


def _reembedded_under_a_paused_job(r: Replay) -> None:
    """A job that wrote its chunks before a re-embedding switched found its collection
    "deleted" (another Chroma id) and failed; a replaced version then a delete made during the
    migration must reach the new collection too (issue 20)."""
    r.step("start", grace=3600)
    [job] = r.step("put_document", slot=ACME_X, document_id="d1", word="alpha")
    [other] = r.step("put_document", slot=ACME_X, document_id="d2", word="alpha")
    r.step("deliver", job=other, worker="worker-a", stall_at=None)
    r.step("deliver", job=job, worker="worker-a", stall_at="publishing")
    r.step("reembed", slot=ACME_X, worker="worker-b")
    r.step("resume_stalled_worker")
    [again] = r.step("put_document", slot=ACME_X, document_id="d2", word="beta")
    r.step("deliver", job=again, worker="worker-b", stall_at=None)
    r.step("delete_document", slot=ACME_X, document_id="d1")
    r.step("reembed", slot=ACME_X, worker="worker-a")
    r.step("let_the_grace_period_pass")


@pytest.mark.parametrize(
    "sequence",
    [
        _colliding_names,
        _drain_judges_the_right_tenant,
        _second_run_keeps_the_live_chunks,
        _same_text_under_two_ids,
        _stalled_run_of_a_superseded_change,
        _reembedded_under_a_paused_job,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_known_sequence(env: Env, sequence: Any) -> None:
    IngestMachine.env = env
    replay = Replay()
    try:
        sequence(replay)
    finally:
        replay.machine.teardown()  # settles, then checks for orphans and vectors
