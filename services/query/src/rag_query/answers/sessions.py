"""Chat sessions: a conversation's turns in Redis, kept SESSION_TTL_SECONDS after last use."""

from __future__ import annotations

import re

import msgspec
from rag_core.catalog import Keys
from rag_core.errors import InvalidInput
from redis.asyncio import Redis

from rag_query.generation.base import Message

SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Turn(msgspec.Struct):
    role: str
    content: str


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys, *, ttl_seconds: int, max_turns: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl_seconds
        self.max_messages = max_turns * 2

    def in_namespace(self, namespace: str) -> SessionStore:
        if namespace == self.keys.namespace:
            return self
        other = SessionStore(
            self.redis, self.keys.in_namespace(namespace), ttl_seconds=self.ttl, max_turns=1
        )
        other.max_messages = self.max_messages
        return other

    @staticmethod
    def check_id(session_id: str) -> str:
        if not SESSION_ID.match(session_id):
            raise InvalidInput(
                "session_id: 1-128 letters, digits and . _ : -",
                extra={"errors": [{"field": "session_id", "message": "invalid"}]},
            )
        return session_id

    def _key(self, session_id: str) -> str:
        return f"{self.keys.prefix}:session:{self.keys.namespace}:{session_id}"

    async def history(self, session_id: str) -> list[Message]:
        raws = await self.redis.lrange(self._key(session_id), -self.max_messages, -1)  # type: ignore[misc]  # redis-py's async typing
        turns = [msgspec.json.decode(raw, type=Turn) for raw in raws]
        return [Message(t.role, t.content) for t in turns if t.role in ("user", "assistant")]  # type: ignore[arg-type]

    async def append(self, session_id: str, question: str, answer: str) -> None:
        key = self._key(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(
                key,
                msgspec.json.encode(Turn("user", question)),
                msgspec.json.encode(Turn("assistant", answer)),
            )
            pipe.ltrim(key, -self.max_messages, -1)
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def clear(self, session_id: str) -> bool:
        return bool(await self.redis.delete(self._key(session_id)))
