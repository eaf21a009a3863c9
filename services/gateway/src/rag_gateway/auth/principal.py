"""A caller's identity and rights: tenant, scopes, and optionally the collections it may use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rag_core.errors import RagError

Scope = Literal["ingest:read", "ingest:write", "query:read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest:read", "ingest:write", "query:read", "admin")
# The identity of the bootstrap admin key (ADMIN_API_KEY): the one credential over every tenant.
BOOTSTRAP_ADMIN = "admin:bootstrap"
IMPLIED: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "ingest:write": frozenset({"ingest:write", "ingest:read"}),
}


class Unauthorized(RagError):
    status_code = 401
    problem = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="rag-engine"'})


class Forbidden(RagError):
    status_code = 403
    problem = "forbidden"
    title = "Forbidden"


@dataclass(frozen=True)
class Principal:
    identity: str  # what limits are counted against: "key:<id>", "jwt:<tenant>:<sub>"
    tenant: str
    scopes: frozenset[str]
    collections: frozenset[str] | None = None  # None: every collection of the tenant
    requests_per_minute: int | None = None
    ingest_bytes_per_day: int | None = None

    @staticmethod
    def expand(scopes: Iterable[str]) -> frozenset[str]:
        found: set[str] = set()
        for scope in scopes:
            found |= IMPLIED.get(scope, {scope})
        return frozenset(found)

    @property
    def is_bootstrap_admin(self) -> bool:
        return self.identity == BOOTSTRAP_ADMIN

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this credential lacks the scope {scope!r}")

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def require_collection(self, collection: str) -> None:
        if not self.may_use(collection):
            # The same answer as for a collection that does not exist: nothing leaks.
            from rag_core.errors import NotFound  # noqa: PLC0415

            raise NotFound(f"collection {collection!r} does not exist")
