"""Long-lived streams (a job's events, streamed answers): how many each tenant and each
credential may hold open at once (MAX_STREAMS_PER_TENANT, MAX_STREAMS_PER_CREDENTIAL), counted
in Redis so every gateway replica counts against the same numbers. Over either: 429 with
Retry-After. Document writes, whose bodies may trickle in for as long as the client likes, are
counted the same way (MAX_UPLOADS_PER_TENANT, MAX_UPLOADS_PER_CREDENTIAL).

An open stream is a lease (``rag_core.leases``) in two sets, its tenant's and its credential's.
The gateway serving the stream renews its leases every LEASE_SECONDS / 3 and drops them when
the stream ends or its client goes away; the leases of a gateway that died lapse by themselves
within LEASE_SECONDS."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rag_core.catalog import Keys
from rag_core.leases import Leases
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rag_gateway.auth.principal import Principal
from rag_gateway.limits import TooManyRequests

log = get_logger("rag.gateway.streams")
LEASE_SECONDS = 60
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class LeaseKind:
    """What a set of leases counts: its limits are MAX_{name}_PER_TENANT and
    MAX_{name}_PER_CREDENTIAL."""

    name: str
    held: str  # what a refusal says the caller holds
    advice: str
    tenant_key: Callable[[Keys, str], str]
    caller_key: Callable[[Keys, str], str]


STREAMS = LeaseKind("STREAMS", "streams open", "end one", Keys.tenant_streams, Keys.caller_streams)
UPLOADS = LeaseKind(
    "UPLOADS",
    "document writes in progress",
    "let one finish",
    Keys.tenant_uploads,
    Keys.caller_uploads,
)


@dataclass
class Lease:
    """One open stream's place under its tenant's and its credential's limits."""

    id: str
    keys: tuple[str, str]  # the tenant's set, the credential's set
    owner: StreamLeases
    closed: bool = False

    def serving(self) -> None:
        """The stream is being sent: renew the lease until it is closed. (A response that is
        never sent leaves a lease that lapses within LEASE_SECONDS.)"""
        if not self.closed:
            self.owner.serving[self.id] = self

    async def release(self) -> None:
        """The stream ended: it counts no more, before the caller hears the end of it."""
        if not self.closed:
            self.closed = True
            self.owner.serving.pop(self.id, None)
            await asyncio.shield(self.owner.drop(self))

    def close(self) -> None:
        """Like ``release`` without waiting, for where awaiting is not possible: a stream
        cancelled because its client went away, a request that failed."""
        if not self.closed:
            self.closed = True
            self.owner.serving.pop(self.id, None)
            self.owner.drop_soon(self)


class StreamLeases:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        per_tenant: int,
        per_credential: int,
        kind: LeaseKind = STREAMS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.kind = kind
        self.per_tenant = per_tenant
        self.per_credential = per_credential
        self.leases = Leases(redis, LEASE_SECONDS)
        self.serving: dict[str, Lease] = {}  # leases of the streams this process is sending
        self._dropping: set[asyncio.Task[None]] = set()

    async def open(self, principal: Principal) -> Lease:
        """A lease for one more stream of ``principal``, or 429 when it may not have one."""
        lease = Lease(
            uuid.uuid4().hex,
            (
                self.kind.tenant_key(self.keys, principal.tenant),
                self.kind.caller_key(self.keys, principal.identity),
            ),
            self,
        )
        tenant_set, caller_set = lease.keys
        refused = await self.leases.take(
            lease.id, [(tenant_set, self.per_tenant), (caller_set, self.per_credential)]
        )
        if refused:
            limit, count, who = (
                (f"MAX_{self.kind.name}_PER_TENANT", self.per_tenant, "this tenant")
                if refused == 1
                else (
                    f"MAX_{self.kind.name}_PER_CREDENTIAL",
                    self.per_credential,
                    "this credential",
                )
            )
            raise TooManyRequests(
                f"{who} already has {count} {self.kind.held} ({limit}): {self.kind.advice}, "
                "or try again later",
                extra={"limit": limit, self.kind.name.lower(): count},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return lease

    def drop_soon(self, lease: Lease) -> None:
        task = asyncio.get_running_loop().create_task(self.drop(lease))
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    async def drop(self, lease: Lease) -> None:
        try:
            await self.leases.drop(lease.id, lease.keys)
        except RedisError as exc:  # it lapses by itself within LEASE_SECONDS
            log.warning("stream_lease_not_dropped", error=type(exc).__name__)

    async def renew(self) -> None:
        """Push back the lapse of every lease this process is serving."""
        leases = list(self.serving.values())
        if not leases:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for lease in leases:
                await self.leases.renew_in(pipe, lease.id, lease.keys)
            await pipe.execute()

    async def keep_renewing(self) -> None:
        """Runs for the life of the app."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:  # the next round tries again before they lapse
                log.warning("stream_leases_not_renewed", error=type(exc).__name__)

    async def close_all(self) -> None:
        """At shutdown: this process's streams are gone, and so are their leases."""
        for lease in list(self.serving.values()):
            await lease.release()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._dropping)
