"""Document records and the atomic switch between a document's versions.

Chunks in Chroma carry their document id (``_doc``) and the content hash of the version they
belong to (``_ver``). A document's Redis record names its active version. A new version's
chunks are upserted first, then one Redis transaction switches the record, the dedup index,
the collection's counters and version, and appends the change to the collection's change
stream; the old version's chunks are deleted only after ``VERSION_GRACE_SECONDS``. Readers
that filter chunks by the active version therefore see one version, never a mix and never
nothing. Each requested change gets a per-document sequence number; a change that is no
longer the newest one requested is dropped ("superseded") instead of switched in.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from rag_ingest.keys import Keys

CHANGES_KEPT = 100_000
_encoder = msgspec.json.Encoder()


class DocumentRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``content_hash`` covers the bytes only (duplicate detection); ``version_hash`` also
    covers metadata, source and chunking settings (a change to any of them is a new version)."""

    id: str
    version: int
    content_hash: str
    version_hash: str
    chunk_count: int
    token_count: int = 0
    format: str | None = None
    title: str | None = None
    source: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] | None = None
    sequence: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def version_tag(self) -> str:
        return version_tag(self.version_hash)


_decoder = msgspec.json.Decoder(DocumentRecord)


def version_tag(version_hash: str) -> str:
    """What chunks store in ``_ver``: enough of the version hash to be unique per document."""
    return version_hash[:16]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_hash(digest: str, **inputs: Any) -> str:
    """Identity of a document version: its bytes plus everything else that shapes its chunks."""
    return hashlib.sha256(digest.encode() + msgspec.json.encode(inputs, order="sorted")).hexdigest()


def chunk_id(document_id: str, version: str, position: int) -> str:
    """Deterministic: the same version always makes the same ids, so a re-run upserts."""
    return hashlib.sha256(f"{document_id}\0{version}\0{position}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SwitchOutcome:
    status: Literal["created", "replaced", "unchanged", "superseded", "deleted", "missing"]
    previous: DocumentRecord | None = None
    collection_version: int | None = None


class DocumentStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def get(self, collection: str, document_id: str) -> DocumentRecord | None:
        raw = await self.redis.get(self.keys.document(collection, document_id))
        return _decoder.decode(raw) if raw else None

    async def get_many(self, collection: str, ids: list[str]) -> list[DocumentRecord]:
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.document(collection, i) for i in ids])
        return [_decoder.decode(raw) for raw in raws if raw]

    async def page(self, collection: str, *, offset: int, limit: int) -> list[str]:
        ids = await self.redis.zrange(self.keys.documents(collection), offset, offset + limit - 1)
        return [i.decode() for i in ids]

    async def owner_of(self, collection: str, digest: str) -> str | None:
        owner = await self.redis.hget(self.keys.content_hashes(collection), digest)  # type: ignore[misc]  # redis-py's async typing
        return owner.decode() if owner else None

    async def next_sequence(self, collection: str, document_id: str) -> int:
        return int(await self.redis.incr(self.keys.document_sequence(collection, document_id)))

    async def latest_sequence(self, collection: str, document_id: str) -> int:
        value = await self.redis.get(self.keys.document_sequence(collection, document_id))
        return int(value or 0)

    async def switch_to(self, collection: str, new: DocumentRecord) -> SwitchOutcome:
        """Make ``new`` the active version, if its change is still the newest requested."""
        doc_key = self.keys.document(collection, new.id)
        seq_key = self.keys.document_sequence(collection, new.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(doc_key, seq_key)
                    latest = int(await pipe.get(seq_key) or 0)
                    raw = await pipe.get(doc_key)
                    previous = _decoder.decode(raw) if raw else None
                    if new.sequence < latest:
                        await pipe.reset()  # type: ignore[no-untyped-call]  # redis-py's async typing
                        return SwitchOutcome("superseded", previous)
                    if previous is not None and previous.version_hash == new.version_hash:
                        await pipe.reset()  # type: ignore[no-untyped-call]  # redis-py's async typing
                        return SwitchOutcome("unchanged", previous)
                    now = time.time()
                    new.version = (previous.version if previous else 0) + 1
                    new.created_at = previous.created_at if previous else now
                    new.updated_at = now
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py's async typing
                    pipe.set(doc_key, _encoder.encode(new))
                    hashes = self.keys.content_hashes(collection)
                    if previous is not None:
                        pipe.hdel(hashes, previous.content_hash)
                    pipe.hset(hashes, new.content_hash, new.id)
                    pipe.zadd(self.keys.documents(collection), {new.id: new.created_at}, nx=True)
                    col = self.keys.collection(collection)
                    delta = new.chunk_count - (previous.chunk_count if previous else 0)
                    pipe.hincrby(col, "chunk_count", delta)
                    pipe.hincrby(col, "version", 1)
                    pipe.xadd(
                        self.keys.changes(collection),
                        {
                            "op": "upsert",
                            "document_id": new.id,
                            "version": new.version_tag,
                            "previous_version": previous.version_tag if previous else "",
                            "chunks": new.chunk_count,
                        },
                        maxlen=CHANGES_KEPT,
                        approximate=True,
                    )
                    results = await pipe.execute()
                    return SwitchOutcome(
                        "replaced" if previous else "created", previous, int(results[-2])
                    )
                except WatchError:
                    continue

    async def remove(self, collection: str, document_id: str) -> SwitchOutcome:
        """Delete the document's record (it disappears from reads at once) and supersede any
        change of it still in flight."""
        doc_key = self.keys.document(collection, document_id)
        seq_key = self.keys.document_sequence(collection, document_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(doc_key)
                    raw = await pipe.get(doc_key)
                    if raw is None:
                        await pipe.reset()  # type: ignore[no-untyped-call]  # redis-py's async typing
                        await self.redis.incr(seq_key)
                        return SwitchOutcome("missing")
                    previous = _decoder.decode(raw)
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py's async typing
                    pipe.incr(seq_key)
                    pipe.delete(doc_key)
                    pipe.hdel(self.keys.content_hashes(collection), previous.content_hash)
                    pipe.zrem(self.keys.documents(collection), document_id)
                    col = self.keys.collection(collection)
                    pipe.hincrby(col, "chunk_count", -previous.chunk_count)
                    pipe.hincrby(col, "version", 1)
                    pipe.xadd(
                        self.keys.changes(collection),
                        {
                            "op": "delete",
                            "document_id": document_id,
                            "previous_version": previous.version_tag,
                        },
                        maxlen=CHANGES_KEPT,
                        approximate=True,
                    )
                    results = await pipe.execute()
                    return SwitchOutcome("deleted", previous, int(results[-2]))
                except WatchError:
                    continue
