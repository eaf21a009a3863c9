"""A migration's state, kept in its collection's record, and every step that changes it.

Each step is one Redis script that first checks the migration is still the one its caller
runs (``reembed_job``) and the collection still the same (``chroma_id``): a cancel, a delete or
a newer migration between two steps makes the next one a no-op the caller is told about,
never a half-applied change. The switch itself also checks that the shadow has caught up with
the last change of the collection's change stream, so no write made during the migration is
left behind by it.

Whole Chroma collections that are no longer needed (the one a switch replaced, after
VERSION_GRACE_SECONDS; a cancelled migration's shadow, at once) are listed in
``Keys.chroma_drops`` by the same script that makes them unneeded, and dropped by workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rag_config import IngestSettings
from rag_core.catalog import Keys
from redis.asyncio import Redis

from rag_ingest.versions import CHANGES_KEPT

LINEAGE_KEPT = 10  # former Chroma ids remembered per collection
_MIGRATION_FIELDS = (
    "'reembed_job', 'reembed_model', 'reembed_dimension', 'reembed_chroma_name', "
    "'reembed_chroma_id', 'reembed_cursor'"
)

# KEYS: collection, drops. ARGV: expected chroma id, expected current job ('' none), new job,
#   model, dimension, drop member prefix (namespace \t collection \t), now.
# A new migration replaces a stopped one (its caller checked that job is over); its shadow is
# kept if it is for the same model (the new job resumes it), else dropped.
_START = f"""
if redis.call('HGET', KEYS[1], 'chroma_id') ~= ARGV[1] then return 'gone' end
local current = redis.call('HGET', KEYS[1], 'reembed_job') or ''
if current ~= ARGV[2] then return 'changed' end
if current ~= '' and redis.call('HGET', KEYS[1], 'reembed_model') ~= ARGV[4] then
  local shadow = redis.call('HGET', KEYS[1], 'reembed_chroma_name')
  if shadow then redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6] .. shadow) end
  redis.call('HDEL', KEYS[1], {_MIGRATION_FIELDS})
end
redis.call('HSET', KEYS[1], 'reembed_job', ARGV[3], 'reembed_model', ARGV[4],
  'reembed_dimension', ARGV[5])
return 'started'
"""

# KEYS: collection, drops. ARGV: drop member prefix, now. Returns the job cancelled, or false.
_CANCEL = f"""
local job = redis.call('HGET', KEYS[1], 'reembed_job')
if not job then return false end
local shadow = redis.call('HGET', KEYS[1], 'reembed_chroma_name')
if shadow then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1] .. shadow) end
redis.call('HDEL', KEYS[1], {_MIGRATION_FIELDS})
return job
"""

# KEYS: collection. ARGV: job, field, value, only if unset ('1'/'0'). 1 if the migration is
# still this job's (and the field now holds ``value``, or an earlier value kept by '1').
_SET = """
if redis.call('HGET', KEYS[1], 'reembed_job') ~= ARGV[1] then return 0 end
if ARGV[4] == '1' then
  redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
return 1
"""

# KEYS: collection, changes, drops. ARGV: job, expected chroma id, cursor caught up to, old
#   Chroma name, drop member prefix, drop due, lineage kept, changes kept.
# Returns 'switched', 'behind' (changes arrived since the cursor: catch up, try again) or
# 'stopped' (cancelled, replaced, or the collection deleted). The switch is a change of its own
# in the stream: query replicas read the changes before it from the former Chroma collection
# and those after it from the new one.
_SWITCH = f"""
if redis.call('HGET', KEYS[1], 'reembed_job') ~= ARGV[1]
   or redis.call('HGET', KEYS[1], 'chroma_id') ~= ARGV[2] then return 'stopped' end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last_id = (last[1] and last[1][1]) or '0-0'
if last_id ~= ARGV[3] then return 'behind' end
local m = redis.call('HMGET', KEYS[1], 'reembed_model', 'reembed_dimension',
  'reembed_chroma_name', 'reembed_chroma_id', 'lineage')
if not m[3] or not m[4] then return 'stopped' end
local lineage = {{}}
for id in string.gmatch(m[5] or '', '%S+') do table.insert(lineage, id) end
table.insert(lineage, ARGV[2])
while #lineage > tonumber(ARGV[7]) do table.remove(lineage, 1) end
redis.call('HSET', KEYS[1], 'model', m[1], 'dimension', m[2], 'chroma_name', m[3],
  'chroma_id', m[4], 'lineage', table.concat(lineage, ' '))
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HDEL', KEYS[1], {_MIGRATION_FIELDS})
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5] .. ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'op', 'reembedded',
  'chroma_id', m[4], 'model', m[1], 'collection_version', version)
return 'switched'
"""


# KEYS: drops. ARGV: member, score it had when read. Taken off only if nobody listed it again
# meanwhile (a later switch away from the same Chroma collection).
_FORGET = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


@dataclass(frozen=True)
class ChromaDrop:
    """A whole Chroma collection to drop, and the collection it was (or was to be) part of:
    it is never dropped while that collection still uses it."""

    namespace: str
    collection: str
    chroma_name: str
    score: str = ""  # as read from the set (``due_drops``)

    def member(self) -> str:
        return f"{self.namespace}\t{self.collection}\t{self.chroma_name}"

    @classmethod
    def parse(cls, member: str, score: str = "") -> ChromaDrop:
        namespace, collection, chroma_name = member.split("\t", 2)
        return cls(namespace, collection, chroma_name, score)


def drop_check_seconds(settings: IngestSettings) -> float:
    """How long a listed drop of a Chroma collection still in use waits before it is looked
    at again (a running migration's shadow is listed from the moment it is named)."""
    return max(60, settings.version_grace_seconds)


def _drop_prefix(tenant: str, collection: str) -> str:
    return f"{tenant}\t{collection}\t"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MigrationStore:
    """Every tenant's migrations: each call names the tenant and collection."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._start = redis.register_script(_START)
        self._cancel = redis.register_script(_CANCEL)
        self._set = redis.register_script(_SET)
        self._switch = redis.register_script(_SWITCH)
        self._forget = redis.register_script(_FORGET)

    async def start(
        self,
        tenant: str,
        collection: str,
        *,
        chroma_id: str,
        replacing: str,
        job_id: str,
        model: str,
        dimension: int,
    ) -> str:
        """'started', 'changed' (another migration started or ended meanwhile: look again) or
        'gone' (the collection was deleted)."""
        reply = await self._start(
            keys=[self.keys.collection(tenant, collection), self.keys.chroma_drops()],
            args=[
                chroma_id,
                replacing,
                job_id,
                model,
                dimension,
                _drop_prefix(tenant, collection),
                time.time(),
            ],
        )
        return _text(reply)

    async def cancel(self, tenant: str, collection: str) -> str | None:
        """Stop the collection's migration and list its shadow to drop; the job it was (None:
        there was none)."""
        reply = await self._cancel(
            keys=[self.keys.collection(tenant, collection), self.keys.chroma_drops()],
            args=[_drop_prefix(tenant, collection), time.time()],
        )
        return _text(reply) if reply else None

    async def record(
        self, tenant: str, collection: str, job_id: str, field: str, value: str, *, keep: bool
    ) -> bool:
        """Set one of the migration's fields (``keep``: only if it has none yet), if the
        migration is still ``job_id``'s."""
        reply = await self._set(
            keys=[self.keys.collection(tenant, collection)],
            args=[job_id, f"reembed_{field}", value, "1" if keep else "0"],
        )
        return bool(reply)

    async def switch(
        self,
        tenant: str,
        collection: str,
        *,
        job_id: str,
        chroma_id: str,
        cursor: str,
        old_chroma_name: str,
        grace_seconds: float,
    ) -> str:
        reply = await self._switch(
            keys=[
                self.keys.collection(tenant, collection),
                self.keys.changes(tenant, collection),
                self.keys.chroma_drops(),
            ],
            args=[
                job_id,
                chroma_id,
                cursor,
                old_chroma_name,
                _drop_prefix(tenant, collection),
                time.time() + grace_seconds,
                LINEAGE_KEPT,
                CHANGES_KEPT,
            ],
        )
        return _text(reply)

    async def drop_later(self, drop: ChromaDrop, due: float) -> None:
        await self.redis.zadd(self.keys.chroma_drops(), {drop.member(): due})

    async def due_drops(self, limit: int) -> list[ChromaDrop]:
        members = await self.redis.zrangebyscore(
            self.keys.chroma_drops(), "-inf", time.time(), start=0, num=limit, withscores=True
        )
        return [ChromaDrop.parse(_text(m), repr(float(score))) for m, score in members]

    async def dropped(self, drop: ChromaDrop) -> None:
        """Take ``drop`` off the list, unless it was listed again since ``due_drops``."""
        await self._forget(keys=[self.keys.chroma_drops()], args=[drop.member(), drop.score])
