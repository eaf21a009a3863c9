"""What Chroma itself holds for a collection, read past the API (to check what it reports)."""

from __future__ import annotations

import httpx
from rag_core.catalog import DEFAULT_NAMESPACE, Keys
from rag_devstack import NativeStack
from rag_devstack.processes import tls_context
from redis import Redis

CHROMA_API = "/api/v2/tenants/default_tenant/databases/default_database"


def chroma_id_of(stack: NativeStack, collection: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The collection's Chroma id, from the catalog: Chroma names are opaque."""
    client = Redis.from_url(stack.redis_url)
    try:
        found = client.hget(Keys("rag").collection(namespace, collection), "chroma_id")
    finally:
        client.close()
    assert isinstance(found, bytes), f"no collection {collection!r} in {namespace!r}"
    return found.decode()


def chunks_in_chroma(stack: NativeStack, collection: str) -> int:
    """Chunks actually stored (every version), counted by Chroma."""
    base = f"http://127.0.0.1:{stack.ports.chroma}{CHROMA_API}"
    with httpx.Client(base_url=base, timeout=30, verify=tls_context()) as chroma:
        count = chroma.get(f"/collections/{chroma_id_of(stack, collection)}/count").json()
    assert isinstance(count, int)
    return count


def chroma_collections(stack: NativeStack) -> dict[str, dict[str, object]]:
    """Every collection Chroma holds: its id -> its metadata."""
    base = f"http://127.0.0.1:{stack.ports.chroma}{CHROMA_API}"
    with httpx.Client(base_url=base, timeout=30, verify=tls_context()) as chroma:
        listed = chroma.get("/collections", params={"limit": 100_000}).json()
    return {c["id"]: c.get("metadata") or {} for c in listed}


def chroma_count(stack: NativeStack, chroma_id: str) -> int:
    base = f"http://127.0.0.1:{stack.ports.chroma}{CHROMA_API}"
    with httpx.Client(base_url=base, timeout=30, verify=tls_context()) as chroma:
        count = chroma.get(f"/collections/{chroma_id}/count").json()
    assert isinstance(count, int)
    return count
