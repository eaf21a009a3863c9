"""/v1/admin/keys: create, list and revoke API keys (needs the `admin` scope)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from rag_core.errors import InvalidInput, NotFound
from rag_core.tenancy import check_tenant

from rag_gateway.auth.keys import ApiKey, ApiKeyStore
from rag_gateway.auth.principal import SCOPES
from rag_gateway.policy import admit


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    tenant: str
    scopes: list[str]
    name: str = ""
    collections: list[str] | None = None
    requests_per_minute: int | None = None
    ingest_bytes_per_day: int | None = None


class KeyOut(msgspec.Struct, omit_defaults=True):
    id: str
    tenant: str
    scopes: list[str]
    name: str
    created_at: float
    collections: list[str] | None = None
    requests_per_minute: int | None = None
    ingest_bytes_per_day: int | None = None
    revoked_at: float | None = None
    key: str | None = None  # only in the answer to the request that created it

    @classmethod
    def of(cls, record: ApiKey, plaintext: str | None = None) -> KeyOut:
        return cls(
            record.id,
            record.tenant,
            record.scopes,
            record.name,
            record.created_at,
            record.collections,
            record.requests_per_minute,
            record.ingest_bytes_per_day,
            record.revoked_at,
            plaintext,
        )


class KeyList(msgspec.Struct):
    keys: list[KeyOut]


async def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, not a dependency: who is asking is settled before the body is read."""
    await admit(connection, "admin")


class AdminController(Controller):
    path = "/v1/admin/keys"
    tags = ["admin"]
    guards = [admin_only]

    @post("", status_code=HTTP_201_CREATED, summary="Create an API key (shown once)")
    async def create_key(
        self,
        data: JSONBody[KeyCreate],
        api_keys: NamedDependency[ApiKeyStore],
    ) -> KeyOut:
        """Scopes: `ingest:read`, `ingest:write`, `query:read`, `admin`. `collections` limits the
        key to those collections of its tenant."""
        check_tenant(data.tenant)
        unknown = sorted(set(data.scopes) - set(SCOPES))
        if not data.scopes or unknown:
            raise InvalidInput.for_field(
                "scopes",
                f"use some of {', '.join(SCOPES)}" + (f"; not {unknown}" if unknown else ""),
            )
        for name, value in (
            ("requests_per_minute", data.requests_per_minute),
            ("ingest_bytes_per_day", data.ingest_bytes_per_day),
        ):
            if value is not None and value < 1:
                raise InvalidInput.for_field(name, "must be at least 1")
        record, plaintext = await api_keys.create(
            tenant=data.tenant,
            scopes=sorted(set(data.scopes)),
            name=data.name,
            collections=sorted(set(data.collections)) if data.collections is not None else None,
            requests_per_minute=data.requests_per_minute,
            ingest_bytes_per_day=data.ingest_bytes_per_day,
        )
        return KeyOut.of(record, plaintext)

    @get("", summary="List API keys (never their secrets)")
    async def list_keys(
        self,
        api_keys: NamedDependency[ApiKeyStore],
        tenant: FromQuery[str | None] = None,
    ) -> KeyList:
        return KeyList([KeyOut.of(k) for k in await api_keys.list(tenant)])

    @delete("/{key_id:str}", status_code=HTTP_200_OK, summary="Revoke an API key")
    async def revoke_key(
        self,
        key_id: FromPath[str],
        api_keys: NamedDependency[ApiKeyStore],
    ) -> KeyOut:
        record = await api_keys.revoke(key_id)
        if record is None:
            raise NotFound(f"API key {key_id!r} does not exist")
        return KeyOut.of(record)
