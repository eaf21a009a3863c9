"""Chat sessions: a conversation's turns in Redis, kept SESSION_TTL_SECONDS after last use.

A session is bound to the collection it was started on: it holds that collection's text
(quoted in answers), so a key limited to other collections must not read it (the gateway
checks the collection ``GET /v1/sessions/{id}`` names), and no question on another
collection may continue it."""

from __future__ import annotations

import re

import msgspec
from rag_core.catalog import Keys
from rag_core.errors import Conflict, InvalidInput
from redis.asyncio import Redis

from rag_query.generation.base import Message

# Not dots only: "." and ".." were sessions that GET and DELETE /v1/sessions/{id} could never
# reach (a dot segment); \Z, as "$" let a trailing newline through.
SESSION_ID = re.compile(r"(?!\.+\Z)[A-Za-z0-9._:-]{1,128}\Z")


class Turn(msgspec.Struct):
    role: str
    content: str


class SessionStore:
    """Every tenant's sessions: each call names the tenant whose session it is."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_seconds: int, max_turns: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl_seconds
        self.max_messages = max_turns * 2

    @staticmethod
    def check_id(session_id: str) -> str:
        if not SESSION_ID.match(session_id):
            raise InvalidInput.for_field(
                "session_id",
                "invalid",
                detail="session_id: 1-128 letters, digits and . _ : -, not dots only",
            )
        return session_id

    async def collection_of(self, tenant: str, session_id: str) -> str | None:
        """The collection the session is bound to (None: no such session)."""
        value = await self.redis.get(self.keys.session_collection(tenant, session_id))
        return value.decode() if value else None

    async def history(
        self, tenant: str, session_id: str, collection: str | None = None
    ) -> list[Message]:
        """The session's turns; with ``collection``, refused if it was started on another."""
        if collection is not None:
            bound = await self.collection_of(tenant, session_id)
            if bound is not None and bound != collection:
                raise _other_collection(session_id)
        raws = await self.redis.lrange(
            self.keys.session(tenant, session_id), -self.max_messages, -1
        )  # type: ignore[misc]  # redis-py's async typing
        turns = [msgspec.json.decode(raw, type=Turn) for raw in raws]
        return [Message(t.role, t.content) for t in turns if t.role in ("user", "assistant")]  # type: ignore[arg-type]

    async def append(
        self, tenant: str, session_id: str, collection: str, question: str, answer: str
    ) -> None:
        key = self.keys.session(tenant, session_id)
        bound_key = self.keys.session_collection(tenant, session_id)
        # Bind it (first use) or keep it bound, in one step with the append.
        if not await self.redis.set(bound_key, collection, nx=True, ex=self.ttl):
            bound = await self.redis.get(bound_key)
            if bound is not None and bound.decode() != collection:
                raise _other_collection(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(bound_key, collection, ex=self.ttl)
            pipe.rpush(
                key,
                msgspec.json.encode(Turn("user", question)),
                msgspec.json.encode(Turn("assistant", answer)),
            )
            pipe.ltrim(key, -self.max_messages, -1)
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def clear(self, tenant: str, session_id: str) -> bool:
        keys = (
            self.keys.session(tenant, session_id),
            self.keys.session_collection(tenant, session_id),
        )
        return bool(await self.redis.delete(*keys))


def _other_collection(session_id: str) -> Conflict:
    # Which collection is not said: the caller may not be allowed to know it.
    return Conflict.for_field(
        "session_id",
        "bound to another collection",
        detail=f"session {session_id!r} belongs to another collection; start a new session_id "
        "for this one",
    )
