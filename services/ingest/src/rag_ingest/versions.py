"""Document records and the atomic switch between a document's versions.

Every requested change of a document gets a per-document sequence number, and the chunks a
job writes carry it as their version tag (``_ver``; chunk ids derive from it too). No two
changes share a chunk, so nothing one job does can touch another job's chunks.

A new version's chunks are upserted first; then one Redis script checks that the change is
still the newest requested (else it is "superseded" and never becomes visible) and that the
collection still exists, and switches the record, the dedup index, the collection's counters
and version, and appends the change to the collection's change stream. Readers that filter
chunks by the active tag therefore see one version, never a mix and never nothing.

Chunks that no reader will ever need again — a replaced version's (after
``VERSION_GRACE_SECONDS``), a deleted document's, a superseded or failed job's — are listed in
one sorted set of pending cleanups, written in the same script that makes them unneeded (or,
for a job's own chunks, before the job writes any). Workers drain it, so a crash at any point
leaves work to finish, never orphans.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from rag_core.catalog import DocumentRecord, Keys, decode_record
from redis.asyncio import Redis

CHANGES_KEPT = 100_000
_encoder = msgspec.json.Encoder()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def derived_id(data: bytes) -> str:
    """Without an explicit id, the content names the document: re-sending it is a no-op."""
    return auto_id(content_hash(data))


def auto_id(digest: str) -> str:
    return "doc-" + digest[:24]


def is_named(document_id: str, digest: str) -> bool:
    """Whether the caller named the document (rather than letting its content name it). A
    named document is kept even when another one has the same text; an auto-named one with
    another's text is that one's duplicate."""
    return document_id != auto_id(digest)


def version_hash(digest: str, **inputs: Any) -> str:
    """Identity of a document version: its bytes plus everything else that shapes its chunks."""
    return hashlib.sha256(digest.encode() + msgspec.json.encode(inputs, order="sorted")).hexdigest()


@dataclass(frozen=True)
class Cleanup:
    """Chunks of one tag of one document that are to be deleted once nobody can need them.

    ``job_id`` is set for a job's own chunks, written before the job stores any: they are
    deleted only when that job can no longer make them active (it ended, or a newer change of
    the document was requested). ``run`` tells two runs of the same job apart (a redelivery
    while a stalled worker still runs it): each lists its own entry, so the one that ends
    first cannot take off the list what the other is still writing."""

    namespace: str
    collection: str
    chroma_id: str
    document_id: str
    tag: str
    job_id: str = ""
    run: str = ""

    def member(self) -> str:
        fields = [
            self.namespace,
            self.collection,
            self.chroma_id,
            self.document_id,
            self.tag,
            self.job_id,
        ]
        if self.run:
            fields.append(self.run)
        return "\t".join(fields)

    def prefix(self) -> str:
        """The member without tag and job: the script completes it with the tag it replaces."""
        return "\t".join((self.namespace, self.collection, self.chroma_id, self.document_id, ""))

    @classmethod
    def parse(cls, member: str) -> Cleanup:
        namespace, collection, chroma_id, document_id, tag, job_id, *run = member.split("\t")
        return cls(namespace, collection, chroma_id, document_id, tag, job_id, "".join(run))


SwitchStatus = Literal[
    "active",
    "created",
    "replaced",
    "unchanged",
    "superseded",
    "duplicate",
    "gone",
    "deleted",
    "missing",
]


@dataclass(frozen=True)
class SwitchOutcome:
    status: SwitchStatus
    previous: DocumentRecord | None = None
    collection_version: int | None = None
    duplicate_of: str | None = None


# KEYS: document, sequence, hashes, documents, collection, changes, cleanups
# ARGV: record, id, sequence, tag, content hash, version hash, chunks, created_at, chroma id,
#       expected previous tag, own cleanup member, cleanup prefix, previous due, changes kept,
#       named ('1': the caller named it, so the same text under another id is no duplicate)
_SWITCH = """
if redis.call('HGET', KEYS[5], 'chroma_id') ~= ARGV[9] then return {'gone'} end
local raw = redis.call('GET', KEYS[1])
local prev = raw and cjson.decode(raw)
local prev_tag = prev and prev.tag or ''
if prev_tag ~= ARGV[10] then return {'stale'} end
if prev_tag == ARGV[4] then
  -- Another run of this very job switched it in already: these are the live chunks.
  redis.call('ZREM', KEYS[7], ARGV[11])
  return {'active', raw}
end
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) < latest then return {'superseded', raw or ''} end
if prev and prev.version_hash == ARGV[6] then return {'unchanged', raw} end
local owner = redis.call('HGET', KEYS[3], ARGV[5])
if not prev and owner and owner ~= ARGV[2] and ARGV[15] ~= '1' then
  return {'duplicate', owner}
end
redis.call('SET', KEYS[1], ARGV[1])
if prev and prev.content_hash ~= ARGV[5]
   and redis.call('HGET', KEYS[3], prev.content_hash) == ARGV[2] then
  redis.call('HDEL', KEYS[3], prev.content_hash)
end
if not owner and tonumber(ARGV[7]) > 0 then redis.call('HSET', KEYS[3], ARGV[5], ARGV[2]) end
redis.call('ZADD', KEYS[4], 'NX', ARGV[8], ARGV[2])
local delta = tonumber(ARGV[7]) - (prev and tonumber(prev.chunk_count) or 0)
redis.call('HINCRBY', KEYS[5], 'chunk_count', delta)
local version = redis.call('HINCRBY', KEYS[5], 'version', 1)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[14], '*', 'op', 'upsert',
  'document_id', ARGV[2], 'version', ARGV[4], 'previous_version', prev_tag,
  'chunks', ARGV[7], 'collection_version', version)
redis.call('ZREM', KEYS[7], ARGV[11])
if prev then redis.call('ZADD', KEYS[7], ARGV[13], ARGV[12] .. prev_tag .. '\\t') end
return {prev and 'replaced' or 'created', raw or '', version}
"""

# KEYS: document, sequence, hashes, documents, collection, changes, cleanups
# ARGV: id, cleanup prefix (namespace \t collection \t), now, changes kept
# The cleanup names the Chroma collection in use now (a re-embedding may have switched it since
# the caller read the collection).
_REMOVE = """
-- Supersede any change still in flight; a document never requested has none, and gets no
-- counter (a DELETE of a made-up id must not leave a key behind).
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCR', KEYS[2]) end
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing'} end
local prev = cjson.decode(raw)
redis.call('DEL', KEYS[1])
if redis.call('HGET', KEYS[3], prev.content_hash) == ARGV[1] then
  redis.call('HDEL', KEYS[3], prev.content_hash)
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'chunk_count', -tonumber(prev.chunk_count))
local version = redis.call('HINCRBY', KEYS[5], 'version', 1)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[4], '*', 'op', 'delete',
  'document_id', ARGV[1], 'previous_version', prev.tag, 'collection_version', version)
local t = '\\t'
local chroma_id = redis.call('HGET', KEYS[5], 'chroma_id') or ''
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[2] .. chroma_id .. t .. ARGV[1] .. t .. prev.tag .. t)
return {'deleted', raw, version}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DocumentStore:
    """Every tenant's document records: each call names the tenant whose document it is."""

    def __init__(self, redis: Redis, keys: Keys, *, grace_seconds: float = 60) -> None:
        self.redis = redis
        self.keys = keys
        self.grace_seconds = grace_seconds
        self._switch = redis.register_script(_SWITCH)
        self._remove = redis.register_script(_REMOVE)

    async def get(self, tenant: str, collection: str, document_id: str) -> DocumentRecord | None:
        raw = await self.redis.get(self.keys.document(tenant, collection, document_id))
        return decode_record(raw) if raw else None

    async def get_many(self, tenant: str, collection: str, ids: list[str]) -> list[DocumentRecord]:
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.document(tenant, collection, i) for i in ids])
        return [decode_record(raw) for raw in raws if raw]

    async def page(self, tenant: str, collection: str, *, offset: int, limit: int) -> list[str]:
        listed = self.keys.documents(tenant, collection)
        ids = await self.redis.zrange(listed, offset, offset + limit - 1)
        return [i.decode() for i in ids]

    async def owner_of(self, tenant: str, collection: str, digest: str) -> str | None:
        owner = await self.redis.hget(self.keys.content_hashes(tenant, collection), digest)  # type: ignore[misc]  # redis-py's async typing
        return owner.decode() if owner else None

    async def next_sequence(self, tenant: str, collection: str, document_id: str) -> int:
        key = self.keys.document_sequence(tenant, collection, document_id)
        return int(await self.redis.incr(key))

    async def latest_sequences(
        self, tenant: str, collection: str, ids: list[str]
    ) -> dict[str, int]:
        """The newest change requested of each of ``ids`` (0: none)."""
        if not ids:
            return {}
        keys = [self.keys.document_sequence(tenant, collection, i) for i in ids]
        return {i: int(v or 0) for i, v in zip(ids, await self.redis.mget(keys), strict=True)}

    async def latest_sequence(self, tenant: str, collection: str, document_id: str) -> int:
        value = await self.redis.get(self.keys.document_sequence(tenant, collection, document_id))
        return int(value or 0)

    def _script_keys(self, tenant: str, collection: str, document_id: str) -> list[str]:
        return [
            self.keys.document(tenant, collection, document_id),
            self.keys.document_sequence(tenant, collection, document_id),
            self.keys.content_hashes(tenant, collection),
            self.keys.documents(tenant, collection),
            self.keys.collection(tenant, collection),
            self.keys.changes(tenant, collection),
            self.keys.cleanups(),
        ]

    async def switch_to(
        self, tenant: str, collection: str, chroma_id: str, new: DocumentRecord, own: Cleanup
    ) -> SwitchOutcome:
        """Make ``new`` the active version, if its change is still the newest requested and
        its content is not another document's; ``own`` is the cleanup its job reserved."""
        while True:
            previous = await self.get(tenant, collection, new.id)
            now = time.time()
            new.version = (previous.version if previous else 0) + 1
            new.created_at = previous.created_at if previous else now
            new.updated_at = now
            reply = await self._switch(
                keys=self._script_keys(tenant, collection, new.id),
                args=[
                    _encoder.encode(new),
                    new.id,
                    new.sequence,
                    new.tag,
                    new.content_hash,
                    new.version_hash,
                    new.chunk_count,
                    new.created_at,
                    chroma_id,
                    previous.tag if previous else "",
                    own.member(),
                    own.prefix(),
                    now + self.grace_seconds,
                    CHANGES_KEPT,
                    "1" if is_named(new.id, new.content_hash) else "0",
                ],
            )
            status = _text(reply[0])
            if status == "stale":
                continue  # another change switched in since we read the record: read again
            if status == "gone":
                return SwitchOutcome("gone")
            if status == "duplicate":
                return SwitchOutcome("duplicate", duplicate_of=_text(reply[1]))
            stored = decode_record(reply[1]) if len(reply) > 1 and reply[1] else None
            if status in ("active", "superseded", "unchanged"):
                return SwitchOutcome(status, stored)  # type: ignore[arg-type]  # checked above
            return SwitchOutcome(status, stored, int(reply[2]))  # type: ignore[arg-type]

    async def remove(self, tenant: str, collection: str, document_id: str) -> SwitchOutcome:
        """Delete the document's record (it disappears from reads at once), supersede any
        change of it still in flight, and list its chunks for cleanup."""
        reply = await self._remove(
            keys=self._script_keys(tenant, collection, document_id),
            args=[document_id, f"{tenant}\t{collection}\t", time.time(), CHANGES_KEPT],
        )
        if _text(reply[0]) == "missing":
            return SwitchOutcome("missing")
        return SwitchOutcome("deleted", decode_record(reply[1]), int(reply[2]))

    # Pending cleanups ------------------------------------------------------------------------
    async def reserve_cleanup(self, cleanup: Cleanup, due: float) -> None:
        """List a job's chunks for cleanup before it writes them; the switch that makes them
        active takes them off the list again."""
        await self.redis.zadd(self.keys.cleanups(), {cleanup.member(): due})

    async def cleanup_now(self, cleanup: Cleanup) -> None:
        await self.redis.zadd(self.keys.cleanups(), {cleanup.member(): time.time()}, xx=True)

    async def due_cleanups(self, limit: int) -> list[Cleanup]:
        members = await self.redis.zrangebyscore(
            self.keys.cleanups(), "-inf", time.time(), start=0, num=limit
        )
        return [Cleanup.parse(_text(m)) for m in members]

    async def postpone_cleanup(self, cleanup: Cleanup, due: float) -> None:
        await self.redis.zadd(self.keys.cleanups(), {cleanup.member(): due}, xx=True)

    async def finish_cleanup(self, cleanup: Cleanup) -> None:
        await self.redis.zrem(self.keys.cleanups(), cleanup.member())
