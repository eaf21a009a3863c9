"""Idempotency-Key: the same key and the same request get the first response again.

Same key, different request: 409. Remembered for IDEMPOTENCY_TTL_HOURS. A request that dies
half-way frees its key within a minute (a short reservation), and one that fails frees it at
once, so a retry runs again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from rag_core.catalog import Keys
from rag_core.errors import Conflict, InvalidInput
from redis.asyncio import Redis

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
RESERVATION_SECONDS = 60


def fingerprint(*parts: Any) -> str:
    """What identifies a request: the same parts, the same request."""
    return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).hexdigest()


@dataclass(frozen=True)
class Outcome:
    body: Any  # JSON-ready
    status: int
    replayed: bool


class IdempotencyGuard:
    def __init__(self, redis: Redis, keys: Keys, ttl_hours: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl_hours * 3600

    async def run(
        self,
        tenant: str,
        key: str | None,
        request: str,
        work: Callable[[], Awaitable[Any]],
        *,
        status: int,
    ) -> Outcome:
        """``work()`` answered with ``status`` — or, for a key seen with the same ``request``
        fingerprint before, that first answer again."""
        if key is None:
            return Outcome(msgspec.to_builtins(await work()), status, replayed=False)
        stored = await self.begin(tenant, key, request)
        if stored is not None:
            return Outcome(stored["body"], int(stored["status"]), replayed=True)
        try:
            body = msgspec.to_builtins(await work())
        except BaseException:
            await self.abandon(tenant, key)
            raise
        await self.finish(tenant, key, request, status, body)
        return Outcome(body, status, replayed=False)

    @staticmethod
    def check_key(key: str) -> None:
        if not IDEMPOTENCY_KEY.match(key):
            raise InvalidInput.for_field(
                "Idempotency-Key",
                "invalid",
                detail="Idempotency-Key must be 1-255 visible ASCII characters",
            )

    async def begin(self, tenant: str, key: str, request: str) -> dict[str, Any] | None:
        """None: go ahead (the key is now reserved). A dict: the stored response to replay."""
        self.check_key(key)
        redis_key = self.keys.idempotency(tenant, key)
        reserved = {"fingerprint": request, "state": "pending"}
        if await self.redis.set(
            redis_key, msgspec.json.encode(reserved), nx=True, ex=RESERVATION_SECONDS
        ):
            return None
        raw = await self.redis.get(redis_key)
        stored: dict[str, Any] = msgspec.json.decode(raw) if raw else {}
        if stored.get("fingerprint") != request:
            raise Conflict("this Idempotency-Key was used for a different request")
        if stored.get("state") != "done":
            raise Conflict("a request with this Idempotency-Key is still being processed")
        return stored

    async def finish(self, tenant: str, key: str, request: str, status: int, body: Any) -> None:
        done = {"fingerprint": request, "state": "done", "status": status, "body": body}
        redis_key = self.keys.idempotency(tenant, key)
        await self.redis.set(redis_key, msgspec.json.encode(done), ex=self.ttl)

    async def abandon(self, tenant: str, key: str) -> None:
        await self.redis.delete(self.keys.idempotency(tenant, key))
