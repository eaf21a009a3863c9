"""/v1/admin/keys: create, list and revoke API keys (needs the `admin` scope).

The bootstrap admin key (ADMIN_API_KEY) manages every tenant's keys. Any other admin
credential makes no key more powerful than itself, and lists and revokes only the keys it
could have made: keys of the tenant it acts in (its own, or X-RAG-Tenant's), with none of the
scopes, collections, rate or quota it does not have itself. A key it could not have made is,
to it, a key that does not exist."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from rag_core.errors import InvalidInput, NotFound, RagError
from rag_core.tenancy import check_collection_name, check_tenant

from rag_gateway.auth.keys import ApiKey, ApiKeyStore
from rag_gateway.auth.principal import SCOPES, Forbidden, Principal
from rag_gateway.limits import Limits
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
    """A guard, not a dependency: who is asking is settled before the body is read. The
    handlers find the caller in the request's state."""
    connection.state.admin = (await admit(connection, "admin")).principal


def _caller(request: Request[Any, Any, Any]) -> Principal:
    caller: Principal = request.state.admin
    return caller


def _beyond(caller: Principal, key: ApiKey, limits: Limits) -> RagError | None:
    """Why ``caller`` may not make ``key`` (403 naming the field), or None: it would be more
    powerful than the caller. The bootstrap admin may make any key."""
    if caller.is_bootstrap_admin:
        return None
    if key.tenant != caller.tenant:
        return Forbidden.for_field(
            "tenant",
            f"this credential manages the keys of tenant {caller.tenant!r}, the tenant it acts "
            "in (another one: send X-RAG-Tenant)",
        )
    missing = sorted(Principal.expand(key.scopes) - caller.scopes)
    if missing:
        return Forbidden.for_field("scopes", f"this credential does not have {missing}")
    if caller.collections is not None and (
        key.collections is None or not set(key.collections) <= caller.collections
    ):
        return Forbidden.for_field(
            "collections",
            f"this credential is limited to the collections {sorted(caller.collections)}: "
            "a key it makes must name some of them",
        )
    for field, own, asked, default in (
        (
            "requests_per_minute",
            caller.requests_per_minute,
            key.requests_per_minute,
            limits.per_minute,
        ),
        (
            "ingest_bytes_per_day",
            caller.ingest_bytes_per_day,
            key.ingest_bytes_per_day,
            limits.bytes_per_day,
        ),
    ):
        # Each as it applies: a key's own limit, else the deployment's default (a caller on
        # the default made keys above it).
        mine = own if own is not None else default
        if (asked if asked is not None else default) > mine:
            return Forbidden.for_field(
                field, f"must be at most {mine}, this credential's own (the default is {default})"
            )
    return None


class AdminController(Controller):
    path = "/v1/admin/keys"
    tags = ["admin"]
    guards = [admin_only]

    @post("", status_code=HTTP_201_CREATED, summary="Create an API key (shown once)")
    async def create_key(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[KeyCreate],
        api_keys: NamedDependency[ApiKeyStore],
    ) -> KeyOut:
        """Scopes: `ingest:read`, `ingest:write`, `query:read`, `admin`. `collections` limits the
        key to those collections of its tenant. A key other than the bootstrap admin key makes
        keys of the tenant it acts in, with no scope, collection, rate or quota it lacks (403)."""
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
        for index, collection in enumerate(data.collections or []):
            # A name no collection can have ("", "NOT VALID/NAME") was kept as written.
            check_collection_name(collection, f"collections[{index}]")
        fields: dict[str, Any] = {
            "tenant": data.tenant,
            "scopes": sorted(set(data.scopes)),
            "name": data.name,
            "collections": sorted(set(data.collections)) if data.collections is not None else None,
            "requests_per_minute": data.requests_per_minute,
            "ingest_bytes_per_day": data.ingest_bytes_per_day,
        }
        refusal = _beyond(_caller(request), ApiKey(id="", **fields), request.app.state.limits)
        if refusal is not None:
            raise refusal
        record, plaintext = await api_keys.create(**fields)
        return KeyOut.of(record, plaintext)

    @get("", summary="List API keys (never their secrets)")
    async def list_keys(
        self,
        request: Request[Any, Any, Any],
        api_keys: NamedDependency[ApiKeyStore],
        tenant: FromQuery[str | None] = None,
    ) -> KeyList:
        """The bootstrap admin key lists every tenant's keys (`tenant`: one tenant's); any other
        credential, the keys of the tenant it acts in that it could have made."""
        caller = _caller(request)
        if caller.is_bootstrap_admin:
            return KeyList([KeyOut.of(k) for k in await api_keys.list(tenant)])
        if tenant is not None and tenant != caller.tenant:
            raise Forbidden.for_field(
                "tenant",
                f"this credential lists the keys of tenant {caller.tenant!r}, the tenant it acts "
                "in (another one: send X-RAG-Tenant)",
            )
        limits: Limits = request.app.state.limits
        found = await api_keys.list(caller.tenant)
        return KeyList([KeyOut.of(k) for k in found if _beyond(caller, k, limits) is None])

    @delete("/{key_id:str}", status_code=HTTP_200_OK, summary="Revoke an API key")
    async def revoke_key(
        self,
        request: Request[Any, Any, Any],
        key_id: FromPath[str],
        api_keys: NamedDependency[ApiKeyStore],
    ) -> KeyOut:
        """Only a key the caller could have made: any other answers as one that does not exist."""
        found = await api_keys.get(key_id)
        if found is None or _beyond(_caller(request), found, request.app.state.limits):
            raise NotFound(f"API key {key_id!r} does not exist")
        record = await api_keys.revoke(key_id)
        if record is None:
            raise NotFound(f"API key {key_id!r} does not exist")
        return KeyOut.of(record)
