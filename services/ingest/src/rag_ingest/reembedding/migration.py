"""The worker's side of a re-embedding: build the shadow, copy, catch up, switch.

1. The shadow: a new Chroma collection for the new model, its name recorded before it is made
   (so a worker that dies in between leaves nothing unnamed behind).
2. The cursor: the last entry of the collection's change stream, recorded before anything is
   copied. Every change after it is caught up in step 4.
3. The copy: every document's active version, read from the collection in use (text, metadata,
   ids and version tags as they are, no parsing), embedded with the new model and written to
   the shadow. A version the shadow holds whole already is skipped, so a run killed half-way
   resumes where it stopped.
4. Catching up: the changes since the cursor (writes and deletes made meanwhile, which went to
   the collection in use), applied to the shadow document by document, until none are left.
5. The switch: one script makes the shadow the collection, if no change came in since the
   cursor (else back to 4). Readers, which find the Chroma id and model in the collection's
   record at every request, move over between one request and the next; the former Chroma
   collection is dropped VERSION_GRACE_SECONDS later.

Writes never wait for a migration; a document job that wrote to the former collection while the
switch happened finds its collection moved and writes again (worker/pipeline.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from rag_config import IngestSettings
from rag_core.catalog import Collection, DocumentRecord, Keys, Migration
from rag_core.chunks import ChunkStore, embedded_text
from rag_core.embedding.base import Embedder
from rag_core.embedding.models import model_revision
from rag_core.errors import Conflict
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.jobs.model import JobRecord
from rag_ingest.metrics import REEMBEDDED_CHUNKS
from rag_ingest.reembedding.store import ChromaDrop, MigrationStore, drop_check_seconds
from rag_ingest.versions import DocumentStore
from rag_ingest.worker.pipeline import BadDocument

log = get_logger("rag.reembed")

Progress = Callable[..., Awaitable[None]]  # (stage, fraction, **event data)
CHANGES_PER_READ = 500
COPY_GROUP = 128  # chunks embedded and written at once; progress is saved after each
SWITCH_TRIES = 50  # catch-up rounds before an attempt gives up (and is retried)


class MigrationStopped(BadDocument):
    """The migration is no longer this job's: cancelled, replaced, or its collection deleted."""


class Reembedder:
    def __init__(
        self,
        settings: IngestSettings,
        redis: Redis,
        keys: Keys,
        registry: CollectionRegistry,
        migrations: MigrationStore,
        documents: DocumentStore,
        chunks: ChunkStore,
        embedders: Callable[[str], Embedder],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.registry = registry
        self.migrations = migrations
        self.documents = documents
        self.chunks = chunks
        self.embedders = embedders

    async def run(
        self, job: JobRecord, collection: Collection, progress: Progress
    ) -> dict[str, Any]:
        started = time.monotonic()
        options = job.options or {}
        target = str(options["embedding_model"])
        migration = collection.migration
        if migration is None or migration.job_id != job.id:
            if _switched(collection, job):
                # An earlier run of this job switched, then could not record it.
                return {"status": "switched", "embedding_model": target}
            raise MigrationStopped("queued", _stopped(collection.name))
        run = _Run(self, job, collection, migration, progress)
        try:
            return await self._migrate(run, started)
        except MigrationStopped:
            # Another run of this job (a redelivery while this one stalled) may have switched.
            now = await self.registry.find(collection.namespace, collection.name)
            if now is not None and _switched(now, job):
                return {"status": "switched", "embedding_model": target}
            raise

    async def _migrate(self, run: _Run, started: float) -> dict[str, Any]:
        job, collection, progress = run.job, run.collection, run.progress
        target = run.migration.model
        await progress("preparing", 0.02)
        shadow_id = await run.shadow()
        cursor = await run.start_cursor()
        listed = self.keys.documents(collection.namespace, collection.name)
        total = int(await self.redis.zcard(listed))
        await run.copy_all(shadow_id, total)
        await progress("catching_up", 0.92, chunks_embedded=run.embedded)
        for _ in range(SWITCH_TRIES):
            cursor = await run.catch_up(shadow_id, cursor)
            outcome = await self.migrations.switch(
                collection.namespace,
                collection.name,
                job_id=job.id,
                chroma_id=collection.chroma_id,
                cursor=cursor,
                old_chroma_name=collection.chroma_name
                or self.keys.legacy_chroma_name(collection.namespace, collection.name),
                grace_seconds=self.settings.version_grace_seconds,
            )
            if outcome == "switched":
                break
            if outcome == "stopped":
                raise MigrationStopped("switching", _stopped(collection.name))
        else:
            # Writes keep coming faster than they are caught up: the next attempt goes on.
            raise TimeoutError("changes kept arriving faster than they were caught up")
        log.info(
            "collection_reembedded",
            collection=collection.name,
            model=target,
            previous_model=collection.embedding_model,
            documents=total,
            chunks_embedded=run.embedded,
            seconds=round(time.monotonic() - started, 2),
        )
        return {
            "status": "switched",
            "embedding_model": target,
            "previous_model": collection.embedding_model,
            "documents": total,
            "chunks_embedded": run.embedded,
            "chunks_already_copied": run.skipped,
            "catch_up_rounds": run.rounds,
            "seconds": round(time.monotonic() - started, 2),
        }


class _Run:
    """One attempt of one migration."""

    def __init__(
        self,
        owner: Reembedder,
        job: JobRecord,
        collection: Collection,
        migration: Migration,
        progress: Progress,
    ) -> None:
        self.o = owner
        self.job = job
        self.collection = collection
        self.migration = migration
        self.progress = progress
        self.tenant, self.name = collection.namespace, collection.name
        self.embedder = owner.embedders(migration.model)
        self.embedded = 0
        self.skipped = 0
        self.rounds = 0
        self.shadow_id = ""
        self.total_chunks = max(collection.chunk_count, 1)

    async def _record(self, field: str, value: str, *, keep: bool) -> Migration:
        """Record a field of the migration; the migration as stored now."""
        if not await self.o.migrations.record(
            self.tenant, self.name, self.job.id, field, value, keep=keep
        ):
            raise MigrationStopped(self.job.stage, _stopped(self.name))
        found = await self.o.registry.find(self.tenant, self.name)
        if found is None or found.migration is None or found.migration.job_id != self.job.id:
            raise MigrationStopped(self.job.stage, _stopped(self.name))
        return found.migration

    async def shadow(self) -> str:
        """The shadow's Chroma id, made now if an earlier attempt has not. From the moment it
        is named it is listed to drop: workers drop it unless it is still the migration's
        shadow or has become the collection (so a cancel, a delete or a crash at any point
        leaves no Chroma collection behind, and no run ever drops one in use)."""
        migration = self.migration
        if migration.chroma_id:
            self.shadow_id = migration.chroma_id
            return self.shadow_id
        name = migration.chroma_name
        if not name:
            named = self.o.keys.new_chroma_name()
            await self.o.migrations.drop_later(
                ChromaDrop(self.tenant, self.name, named),
                time.time() + drop_check_seconds(self.o.settings),
            )
            migration = await self._record("chroma_name", named, keep=True)
            name = migration.chroma_name
        metadata = {"rag_model": migration.model, "rag_dimension": migration.dimension}
        try:
            made = await self.o.chunks.create_collection(name, metadata)
        except Conflict:  # made by an attempt that died before recording it
            existing = await self.o.chunks.get_collection(name)
            if existing is None:
                raise
            made = existing
        try:
            migration = await self._record("chroma_id", made.id, keep=True)
        except MigrationStopped:
            # Cancelled meanwhile: its drop may have come (and found nothing) before the
            # collection was made. Listed again; workers drop it unless it is in use.
            await self.o.migrations.drop_later(ChromaDrop(self.tenant, self.name, name), 0)
            raise
        self.shadow_id = migration.chroma_id
        return self.shadow_id

    async def start_cursor(self) -> str:
        """Where catching up starts: the stream's last entry before the copy reads anything
        (kept from an earlier attempt: what it copied is checked again anyway)."""
        if self.migration.cursor:
            return self.migration.cursor
        last = await self.o.redis.xrevrange(self._changes(), count=1)
        cursor = last[0][0].decode() if last else "0-0"
        return (await self._record("cursor", cursor, keep=True)).cursor

    def _changes(self) -> str:
        return self.o.keys.changes(self.tenant, self.name)

    async def copy_all(self, shadow_id: str, total: int) -> None:
        """Every document's active version into the shadow (ZSCAN: each document that stays in
        the collection throughout is seen at least once, whatever is added or removed)."""
        done = 0
        batch: list[str] = []
        size = self.o.settings.reembed_batch_documents
        key = self.o.keys.documents(self.tenant, self.name)
        await self.progress("copying", 0.05, documents=0, of=total)
        async for member, _score in self.o.redis.zscan_iter(key, count=size):
            batch.append(member.decode() if isinstance(member, bytes) else str(member))
            if len(batch) >= size:
                done += await self._step(shadow_id, batch, done, total)
                batch = []
        if batch:
            done += await self._step(shadow_id, batch, done, total)

    def _copied(self) -> float:
        """How far the copy is, by chunks (documents differ a thousandfold in size)."""
        handled = (self.embedded + self.skipped) / self.total_chunks
        return round(0.05 + 0.85 * min(handled, 1.0), 3)

    async def _step(self, shadow_id: str, batch: list[str], done: int, total: int) -> int:
        await self.sync(shadow_id, batch)
        done += len(batch)
        # Saving progress is fenced: a cancelled job's worker stops here (JobLost).
        await self.progress(
            "copying",
            max(self._copied(), self.job.progress),
            documents=min(done, total),
            of=total,
            chunks_embedded=self.embedded,
        )
        await self._still_ours()
        return len(batch)

    async def _still_ours(self) -> None:
        job = await self.o.redis.hget(  # type: ignore[misc]  # redis-py's async typing
            self.o.keys.collection(self.tenant, self.name), "reembed_job"
        )
        if job is None or job.decode() != self.job.id:
            raise MigrationStopped(self.job.stage, _stopped(self.name))

    async def sync(self, shadow_id: str, document_ids: Iterable[str]) -> None:
        """Make the shadow hold exactly the active version of each of ``document_ids``: copy
        the ones it lacks (or holds in part), remove other versions and deleted documents.

        What the shadow holds is read before the records: a version it holds was active
        when it was copied, so a record read later is that version or a newer one, and a
        concurrent run of this job that copied a newer one is never undone. A version is only
        removed once a newer change of its document was requested (the document's sequence is
        past it): then it can never be switched in again, even by a job writing into the
        shadow after the switch."""
        ids = sorted(set(document_ids))
        revision = model_revision(self.migration.model)
        held = await self.o.chunks.version_counts(shadow_id, ids)
        # Whole only in vectors of the model's current revision: a shadow resumed after an
        # upgrade (or written by a worker not upgraded yet) may hold others, copied again.
        current = await self.o.chunks.version_counts(shadow_id, ids, revision=revision)
        records = {r.id: r for r in await self.o.documents.get_many(self.tenant, self.name, ids)}
        other = sorted({doc for doc, tag in held if _tag_of(records.get(doc)) != tag})
        if other:
            latest = await self.o.documents.latest_sequences(self.tenant, self.name, other)
            for document_id, tag in held:
                if _tag_of(records.get(document_id)) == tag:
                    continue
                # (Tags from before versions were numbered can never switch in again.)
                if not tag.isdigit() or int(tag) < latest.get(document_id, 0):
                    await self.o.chunks.delete_version(shadow_id, document_id, tag)
        wanted = {
            doc: record.tag
            for doc, record in records.items()
            if current.get((doc, record.tag), 0) < record.chunk_count
        }
        self.skipped += sum(
            record.chunk_count for doc, record in records.items() if doc not in wanted
        )
        if not wanted:
            return
        source = await self.o.chunks.versions(self.collection.chroma_id, wanted)
        chunks = [chunk for found in source.values() for chunk in found]
        # Embedded as the worker embeds now (CHUNK_HEADER_EMBEDDED), by the model's current
        # revision. (The versions' hashes name the former model: each document's next
        # submission is a new version whatever it says.)
        for chunk in chunks:
            chunk.header_embedded = self.o.settings.chunk_header_embedded
            chunk.model_revision = revision
        # (None found: replaced or deleted since read; the change stream brings what is new.)
        for start in range(0, len(chunks), COPY_GROUP):
            group = chunks[start : start + COPY_GROUP]
            vectors = await self.embedder.embed_documents([embedded_text(c) for c in group])
            await self.o.chunks.write(shadow_id, group, vectors)
            self.embedded += len(group)
            REEMBEDDED_CHUNKS.inc(len(group))
            if start + COPY_GROUP < len(chunks):  # (the step's end saves its own)
                copying = self.job.stage == "copying"
                await self.progress(
                    self.job.stage,
                    max(self._copied(), self.job.progress) if copying else self.job.progress,
                    chunks_embedded=self.embedded,
                )

    async def catch_up(self, shadow_id: str, cursor: str) -> str:
        """Apply every change after ``cursor`` to the shadow; the last one applied."""
        self.rounds += 1
        while True:
            if await self._trimmed_since(cursor):
                # Changes after the cursor were trimmed from the stream (more than it keeps came
                # in during the migration): check every document again instead. (A document
                # deleted in the gap may leave chunks no reader sees: its record is gone.)
                log.warning("reembed_changes_trimmed", collection=self.name, cursor=cursor)
                last = await self.o.redis.xrevrange(self._changes(), count=1)
                fresh = last[0][0].decode() if last else "0-0"
                listed = self.o.keys.documents(self.tenant, self.name)
                await self.copy_all(shadow_id, int(await self.o.redis.zcard(listed)))
                cursor = fresh
            entries = await self.o.redis.xrange(
                self._changes(), min=f"({cursor}", max="+", count=CHANGES_PER_READ
            )
            if not entries:
                return cursor
            touched = {raw[b"document_id"].decode() for _, raw in entries if b"document_id" in raw}
            if touched:
                await self.sync(shadow_id, touched)
            cursor = entries[-1][0].decode()
            await self._record("cursor", cursor, keep=False)
            await self.progress(
                "catching_up", 0.92, changes_applied=len(entries), chunks_embedded=self.embedded
            )

    async def _trimmed_since(self, cursor: str) -> bool:
        try:
            info = await self.o.redis.xinfo_stream(self._changes())
        except ResponseError:  # no stream (no change yet): nothing was trimmed
            if await self.o.redis.exists(self._changes()):
                raise
            return False
        deleted = info.get("max-deleted-entry-id")
        if not deleted:
            return False
        deleted_id = deleted.decode() if isinstance(deleted, bytes) else str(deleted)
        return _stream_id(deleted_id) > _stream_id(cursor)


def _switched(collection: Collection, job: JobRecord) -> bool:
    """Whether the collection has moved from the Chroma collection the job started from to
    the job's model: by a run of this job (or by a later job to the same model, once this
    one was cancelled: either way the work is done)."""
    options = job.options or {}
    started_from = str(options.get("chroma_id", ""))
    return (
        collection.embedding_model == options.get("embedding_model")
        and collection.chroma_id != started_from
        and collection.owns(started_from)
    )


def _tag_of(record: DocumentRecord | None) -> str | None:
    return record.tag if record is not None else None


def _stream_id(entry: str) -> tuple[int, int]:
    millis, _, seq = entry.partition("-")
    return int(millis), int(seq or 0)


def _stopped(name: str) -> str:
    return (
        f"the re-embedding of collection {name!r} was cancelled, replaced by a newer one, or "
        "the collection was deleted"
    )
