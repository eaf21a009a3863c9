"""Job records in Redis, indexed by state and collection, each with a stream of its events.

Records outlive arq's own results (``JOB_RETENTION_DAYS``): a user can always find out what
became of a job, and a job that exhausted its retries stays visible as ``dead``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from rag_core.catalog import Keys
from redis.asyncio import Redis

from rag_ingest.jobs.model import JOB_STATES, JobRecord, JobState

EVENTS_KEPT = 500
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobRecord)


# KEYS: record, payload, events
# ARGV: record, ttl, id, state, collection, created_at, index prefix, expected run,
#       expected states ("a,b" or ""), expected worker (or ""), events kept, event fields...
_SAVE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local stored = cjson.decode(raw)
if tonumber(stored.run) ~= tonumber(ARGV[8]) then return 0 end
if ARGV[9] ~= '' and not string.find(',' .. ARGV[9] .. ',', ',' .. stored.state .. ',', 1, true)
  then return 0 end
if ARGV[10] ~= '' and stored.worker ~= ARGV[10] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if stored.state ~= ARGV[4] then
  local p, id, col = ARGV[7], ARGV[3], ARGV[5]
  redis.call('ZREM', p .. ':state:' .. stored.state, id)
  redis.call('ZADD', p .. ':state:' .. ARGV[4], ARGV[6], id)
  redis.call('ZREM', p .. ':col:' .. col .. ':state:' .. stored.state, id)
  redis.call('ZADD', p .. ':col:' .. col .. ':state:' .. ARGV[4], ARGV[6], id)
end
if ARGV[4] == 'succeeded' then redis.call('DEL', KEYS[2]) end
if #ARGV > 11 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[11], '*', unpack(ARGV, 12))
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
return 1
"""


class JobStore:
    """Every tenant's jobs: a record names its tenant, and reads name the tenant asking."""

    def __init__(self, redis: Redis, keys: Keys, *, retention_days: int) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_seconds = retention_days * 86_400
        self._save = redis.register_script(_SAVE)

    async def create(self, record: JobRecord, payload: bytes | None = None) -> None:
        """Store the record (and the document bytes the worker will need) atomically."""
        now = time.time()
        record.created_at = record.updated_at = now
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.job(record.id), _encoder.encode(record), ex=self.retention_seconds)
            if payload is not None:
                pipe.set(self.keys.job_payload(record.id), payload, ex=self.retention_seconds)
            tenant = record.namespace
            pipe.zadd(self.keys.jobs_all(tenant), {record.id: now})
            pipe.zadd(self.keys.jobs_by_collection(tenant, record.collection), {record.id: now})
            pipe.zadd(self.keys.jobs_by_state(tenant, record.state), {record.id: now})
            pipe.zadd(
                self.keys.jobs_by_collection_state(tenant, record.collection, record.state),
                {record.id: now},
            )
            events = self.keys.job_events(record.id)
            fields: dict[Any, Any] = self._event_fields(record, "queued", {})
            pipe.xadd(events, fields, maxlen=EVENTS_KEPT, approximate=True)
            pipe.expire(events, self.retention_seconds)
            await pipe.execute()

    async def get(self, tenant: str | None, job_id: str) -> JobRecord | None:
        """The job, if it is ``tenant``'s (another tenant's job does not exist for it); with
        None (the worker, which serves every tenant), whoever's it is."""
        raw = await self.redis.get(self.keys.job(job_id))
        record = _decoder.decode(raw) if raw else None
        if record is None or (tenant is not None and record.namespace != tenant):
            return None
        return record

    async def get_many(self, tenant: str, job_ids: Sequence[str]) -> list[JobRecord]:
        if not job_ids:
            return []
        raws = await self.redis.mget([self.keys.job(job_id) for job_id in job_ids])
        records = [_decoder.decode(raw) for raw in raws if raw]
        return [r for r in records if r.namespace == tenant]

    async def payload(self, job_id: str) -> bytes | None:
        data: bytes | None = await self.redis.get(self.keys.job_payload(job_id))
        return data

    async def save(
        self,
        record: JobRecord,
        *,
        expect_states: Sequence[JobState] = (),
        expect_worker: str | None = None,
        expect_run: int | None = None,
        event: str | None = None,
        **event_data: Any,
    ) -> bool:
        """Write the record, move it between state indexes, and add ``event`` — all at once,
        and only if the stored record is still in the run (``expect_run``, default the
        record's), one of ``expect_states`` and owned by ``expect_worker`` where given.
        False when it is not: someone else (a retry, the reconciler) has taken the job."""
        record.updated_at = time.time()
        fields = self._event_fields(record, event, event_data) if event else {}
        written = await self._save(
            keys=[
                self.keys.job(record.id),
                self.keys.job_payload(record.id),
                self.keys.job_events(record.id),
            ],
            args=[
                _encoder.encode(record),
                self.retention_seconds,
                record.id,
                record.state,
                record.collection,
                record.created_at,
                self.keys.jobs_all(record.namespace),
                record.run if expect_run is None else expect_run,
                ",".join(expect_states),
                expect_worker or "",
                EVENTS_KEPT,
                *[item for pair in fields.items() for item in pair],
            ],
        )
        return bool(written)

    @staticmethod
    def _event_fields(record: JobRecord, event: str, data: dict[str, Any]) -> dict[str, str]:
        fields = {
            "event": event,
            "state": record.state,
            "stage": record.stage,
            "progress": f"{record.progress:.3f}",
            "attempts": str(record.attempts),
            "at": f"{time.time():.3f}",
        }
        if record.error:
            fields["error"] = record.error
        fields.update({k: str(v) for k, v in data.items()})
        return fields

    async def find(
        self,
        tenant: str,
        *,
        state: JobState | None = None,
        collection: str | None = None,
        limit: int = 50,
        before: float | None = None,
    ) -> list[JobRecord]:
        """The tenant's jobs, newest first; ``before`` (a created_at) pages further back."""
        if state is not None and collection is not None:
            index = self.keys.jobs_by_collection_state(tenant, collection, state)
        elif state is not None:
            index = self.keys.jobs_by_state(tenant, state)
        elif collection is not None:
            index = self.keys.jobs_by_collection(tenant, collection)
        else:
            index = self.keys.jobs_all(tenant)
        return await self.get_many(tenant, await self._page(index, limit, before))

    async def _page(self, index: str, limit: int, before: float | None) -> list[str]:
        upper = f"({before}" if before is not None else "+inf"
        ids = await self.redis.zrevrangebyscore(index, upper, "-inf", start=0, num=limit)
        return [i.decode() for i in ids]

    async def counts(self, tenant: str) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for state in JOB_STATES:
                pipe.zcard(self.keys.jobs_by_state(tenant, state))
            values = await pipe.execute()
        return dict(zip(JOB_STATES, values, strict=True))
