"""API keys: ``rag_<id>_<secret>``; Redis keeps only a SHA-256 of the secret.

A key belongs to one tenant, has scopes, and optionally a set of collections and its own rate
limits. The key itself is shown once, when it is created; afterwards only its id is known.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import msgspec
from rag_core.catalog import Keys
from redis.asyncio import Redis

KEY_PATTERN = re.compile(r"^rag_([a-f0-9]{16})_([A-Za-z0-9_-]{32,64})\Z")  # \Z: no final \n


class ApiKey(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    tenant: str
    scopes: list[str]
    name: str = ""
    collections: list[str] | None = None
    requests_per_minute: int | None = None
    ingest_bytes_per_day: int | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    secret_sha256: str = ""


_decoder = msgspec.json.Decoder(ApiKey)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def _key(self, key_id: str) -> str:
        return self.keys.api_key(key_id)

    def _index(self) -> str:
        return self.keys.api_keys()

    async def create(self, **fields: Any) -> tuple[ApiKey, str]:
        """The stored key and the one-time plaintext ``rag_<id>_<secret>``."""
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        record = ApiKey(id=key_id, created_at=time.time(), secret_sha256=_digest(secret), **fields)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(key_id), msgspec.json.encode(record))
            pipe.zadd(self._index(), {key_id: record.created_at})
            await pipe.execute()
        return record, f"rag_{key_id}_{secret}"

    async def get(self, key_id: str) -> ApiKey | None:
        raw = await self.redis.get(self._key(key_id))
        return _decoder.decode(raw) if raw else None

    async def verify(self, presented: str) -> ApiKey | None:
        """The live key ``presented`` is, or None (malformed, unknown, wrong secret, revoked)."""
        match = KEY_PATTERN.fullmatch(presented)
        if not match:
            return None
        record = await self.get(match.group(1))
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.secret_sha256, _digest(match.group(2))):
            return None
        return record

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        ids = [i.decode() for i in await self.redis.zrange(self._index(), 0, -1)]
        raws = await self.redis.mget([self._key(i) for i in ids]) if ids else []
        found = [_decoder.decode(raw) for raw in raws if raw]
        return [k for k in found if tenant is None or k.tenant == tenant]

    async def revoke(self, key_id: str) -> ApiKey | None:
        record = await self.get(key_id)
        if record is None:
            return None
        if record.revoked_at is None:
            record.revoked_at = time.time()
            await self.redis.set(self._key(key_id), msgspec.json.encode(record))
        return record
