"""What ingest writes and query reads: Redis key names, collection and document records.

Both services use this one definition (they never import each other): ingest writes the
records, query reads them to find a collection's Chroma id and model, and which version of
each document is the active one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis

from rag_core.errors import NotFound

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Keys:
    """Every Redis key name, under ``prefix`` (REDIS_PREFIX): the one place they are built.

    A key of a tenant's data takes the tenant (its namespace) as its first argument: stores
    are shared by every tenant and are told whose data each call is about, so none can fall
    back to a tenant of its own. The parts are validated where they enter (tenants match
    TENANT_PATTERN, collection names the registry's NAME_PATTERN; neither holds ``:``), and
    free-form parts (document, job, session ids) only ever come last, so no two keys of
    different tenants or collections can be the same."""

    prefix: str

    # Collections ----------------------------------------------------------------------------
    def namespaces(self) -> str:
        """Set of every namespace that has had a collection (shared by all of them)."""
        return f"{self.prefix}:namespaces"

    def collections(self, tenant: str) -> str:
        return f"{self.prefix}:cols:{tenant}"

    def collection(self, tenant: str, name: str) -> str:
        return f"{self.prefix}:col:{tenant}:{name}"

    def new_chroma_name(self) -> str:
        """A fresh, opaque Chroma collection name. Never derived from tenant or collection
        names: ``acme`` + ``x-hbk`` and ``acme-x`` + ``hbk`` would otherwise meet in one."""
        return f"{self.prefix}-{uuid.uuid4().hex}"

    def legacy_chroma_name(self, tenant: str, name: str) -> str:
        """How collections created before opaque names were named in Chroma."""
        return f"{self.prefix}-{tenant}-{name}"

    # Documents ------------------------------------------------------------------------------
    def documents(self, tenant: str, collection: str) -> str:
        """Sorted set of document ids, scored by first ingest time."""
        return f"{self.prefix}:docs:{tenant}:{collection}"

    def document(self, tenant: str, collection: str, document_id: str) -> str:
        return f"{self.prefix}:doc:{tenant}:{collection}:{document_id}"

    def per_document_patterns(self, tenant: str, collection: str) -> list[str]:
        """Patterns matching every per-document key of a collection (for deleting it)."""
        return [f"{self.prefix}:{kind}:{tenant}:{collection}:*" for kind in ("doc", "docseq")]

    def content_hashes(self, tenant: str, collection: str) -> str:
        """Hash content_hash -> document id: the dedup index."""
        return f"{self.prefix}:hashes:{tenant}:{collection}"

    def document_sequence(self, tenant: str, collection: str, document_id: str) -> str:
        """Counter giving each change to a document its order (the newest change wins)."""
        return f"{self.prefix}:docseq:{tenant}:{collection}:{document_id}"

    def document_lock(self, tenant: str, collection: str, document_id: str) -> str:
        return f"{self.prefix}:lock:{tenant}:{collection}:{document_id}"

    def changes(self, tenant: str, collection: str) -> str:
        """Stream of chunk changes that query replicas follow."""
        return f"{self.prefix}:changes:{tenant}:{collection}"

    # Jobs -----------------------------------------------------------------------------------
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_events(self, job_id: str) -> str:
        return f"{self.prefix}:jobev:{job_id}"

    def job_payload(self, job_id: str) -> str:
        return f"{self.prefix}:payload:{job_id}"

    # The job save script (jobs/store.py) derives the two state indexes from jobs_all().
    def jobs_all(self, tenant: str) -> str:
        return f"{self.prefix}:jobs:{tenant}"

    def jobs_by_state(self, tenant: str, state: str) -> str:
        return f"{self.prefix}:jobs:{tenant}:state:{state}"

    def jobs_by_collection(self, tenant: str, collection: str) -> str:
        return f"{self.prefix}:jobs:{tenant}:col:{collection}"

    def jobs_by_collection_state(self, tenant: str, collection: str, state: str) -> str:
        return f"{self.prefix}:jobs:{tenant}:col:{collection}:state:{state}"

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"

    # Query ----------------------------------------------------------------------------------
    def answer(self, tenant: str, collection: str, chroma_id: str, digest: str) -> str:
        """A cached answer. ``chroma_id`` is new for every creation of a collection, so a
        deleted and re-created one never serves the old one's answers."""
        return f"{self.prefix}:answer:{tenant}:{collection}:{chroma_id}:{digest}"

    def session(self, tenant: str, session_id: str) -> str:
        """A chat session's turns."""
        return f"{self.prefix}:session:{tenant}:{session_id}"

    def session_collection(self, tenant: str, session_id: str) -> str:
        """The collection (name and Chroma id) a chat session is bound to."""
        return f"{self.prefix}:sessioncol:{tenant}:{session_id}"

    # Worker ---------------------------------------------------------------------------------
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    def worker_heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def live_workers(self) -> str:
        """Sorted set of worker ids, scored by the time of each one's last heartbeat."""
        return f"{self.prefix}:workers"

    def chroma_drops(self) -> str:
        """Sorted set of whole Chroma collections to drop (a re-embedded collection's former
        one, a cancelled migration's shadow), scored by when they may go. Each member names
        its namespace, collection and Chroma collection (see ``ChromaDrop``)."""
        return f"{self.prefix}:chromadrops"

    def cleanups(self) -> str:
        """Sorted set of chunk sets to delete from Chroma, scored by when they may go (shared
        by every namespace: each member names its own)."""
        return f"{self.prefix}:cleanups"

    # Per-tenant and per-caller limits ---------------------------------------------------------
    def evaluation(self, tenant: str, evaluation_id: str) -> str:
        """An evaluation run's record."""
        return f"{self.prefix}:eval:{tenant}:{evaluation_id}"

    def request_rate(self, identity: str, minute: int) -> str:
        """Requests the caller ``identity`` made in one minute (the gateway's rate limit)."""
        return f"{self.prefix}:rate:{identity}:{minute}"

    def api_key(self, key_id: str) -> str:
        return f"{self.prefix}:apikey:{key_id}"

    def api_keys(self) -> str:
        """Set of every API key id (shared by all tenants: each key names its own)."""
        return f"{self.prefix}:apikeys"

    def evaluation_slots(self, tenant: str) -> str:
        """Sorted set of the namespace's running background evaluations, scored by when each
        one's lease lapses unless its query replica renews it."""
        return f"{self.prefix}:evalslots:{tenant}"

    def ingest_quota(self, identity: str, day: int) -> str:
        """Bytes of documents the caller ``identity`` (an API key or token subject) sent on UTC
        ``day``: the gateway counts request bodies here, the worker the pages URL ingest
        fetches (identities are built by the gateway and cannot name another caller)."""
        return f"{self.prefix}:quota:{identity}:{day}"

    def tenant_streams(self, tenant: str) -> str:
        """Sorted set of the namespace's open long-lived streams (job events, streamed
        answers), scored by when each one's lease lapses unless its gateway renews it."""
        return f"{self.prefix}:streams:{tenant}"

    def caller_streams(self, identity: str) -> str:
        """The same for one caller (an API key or token subject), over every tenant."""
        return f"{self.prefix}:callerstreams:{identity}"

    def tenant_uploads(self, tenant: str) -> str:
        """Sorted set of the namespace's document writes in progress (their bodies still
        arriving), scored like ``tenant_streams``."""
        return f"{self.prefix}:uploads:{tenant}"

    def caller_uploads(self, identity: str) -> str:
        """The same for one caller (an API key or token subject), over every tenant."""
        return f"{self.prefix}:calleruploads:{identity}"


@dataclass(frozen=True)
class Collection:
    name: str
    embedding_model: str
    dimension: int
    chroma_id: str
    created_at: float
    version: int
    document_count: int
    chunk_count: int
    description: str = ""
    namespace: str = DEFAULT_NAMESPACE
    chroma_name: str = ""  # empty for collections made before opaque names (legacy name)
    # The Chroma ids the collection had before re-embeddings, newest last: jobs queued and
    # indexes built before a switch still belong to it.
    lineage: tuple[str, ...] = ()
    migration: Migration | None = None

    @classmethod
    def from_redis(
        cls, fields: dict[bytes, bytes], document_count: int, namespace: str
    ) -> Collection:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            name=f["name"],
            embedding_model=f["model"],
            dimension=int(f["dimension"]),
            chroma_id=f["chroma_id"],
            created_at=float(f["created_at"]),
            version=int(f.get("version", 0)),
            document_count=document_count,
            chunk_count=int(f.get("chunk_count", 0)),
            description=f.get("description", ""),
            namespace=namespace,
            chroma_name=f.get("chroma_name", ""),
            lineage=tuple(f.get("lineage", "").split()),
            migration=Migration.from_fields(f),
        )

    def owns(self, chroma_id: str) -> bool:
        """Whether ``chroma_id`` is this collection's, now or before a re-embedding (not a
        deleted namesake's)."""
        return chroma_id == self.chroma_id or chroma_id in self.lineage


@dataclass(frozen=True)
class Migration:
    """A re-embedding of a collection in progress (or stopped, failed, waiting to be resumed or
    cancelled): the job doing it, the model it moves to, and its shadow Chroma collection once
    made. ``cursor`` is the change-stream entry the shadow has caught up to."""

    job_id: str
    model: str
    dimension: int
    chroma_name: str = ""
    chroma_id: str = ""
    cursor: str = ""

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> Migration | None:
        if not f.get("reembed_job"):
            return None
        return cls(
            job_id=f["reembed_job"],
            model=f.get("reembed_model", ""),
            dimension=int(f.get("reembed_dimension", 0)),
            chroma_name=f.get("reembed_chroma_name", ""),
            chroma_id=f.get("reembed_chroma_id", ""),
            cursor=f.get("reembed_cursor", ""),
        )


class DocumentRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``content_hash`` covers the bytes only (duplicate detection); ``version_hash`` also
    covers metadata, source and chunking settings (a change to any of them is a new version);
    ``tag`` names the chunks of this version in Chroma (``_ver``)."""

    id: str
    version: int
    tag: str
    content_hash: str
    version_hash: str
    chunk_count: int
    token_count: int = 0
    format: str | None = None
    title: str | None = None
    source: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] | None = None
    sequence: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0


_record_decoder = msgspec.json.Decoder(DocumentRecord)


def decode_record(raw: bytes) -> DocumentRecord:
    return _record_decoder.decode(raw)


class CollectionCatalog:
    """Reads collection records (ingest's registry adds creating and deleting them). One
    catalog serves every tenant: each call names the tenant whose collections it reads."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def namespaces(self) -> list[str]:
        """Every tenant that has had a collection, and the default one (whose collections
        may predate the set)."""
        found = await self.redis.smembers(self.keys.namespaces())  # type: ignore[misc]  # redis-py's async typing
        return sorted({DEFAULT_NAMESPACE, *(n.decode() for n in found)})

    async def find(self, tenant: str, name: str) -> Collection | None:
        fields = await self.redis.hgetall(self.keys.collection(tenant, name))  # type: ignore[misc]  # redis-py's async typing
        if not fields or b"chroma_id" not in fields:
            return None
        count = await self.redis.zcard(self.keys.documents(tenant, name))
        return Collection.from_redis(fields, count, tenant)

    async def get(self, tenant: str, name: str) -> Collection:
        collection = await self.find(tenant, name)
        if collection is None:
            raise NotFound(f"collection {name!r} does not exist")
        return collection

    async def names(self, tenant: str) -> list[str]:
        return [n.decode() for n in await self.redis.zrange(self.keys.collections(tenant), 0, -1)]

    async def all(self, tenant: str) -> list[Collection]:
        found = [await self.find(tenant, name) for name in await self.names(tenant)]
        return [c for c in found if c is not None]

    async def documents(
        self, tenant: str, collection: str, ids: list[str]
    ) -> dict[str, DocumentRecord]:
        """The records of ``ids`` that exist, by id."""
        if not ids:
            return {}
        raws = await self.redis.mget([self.keys.document(tenant, collection, i) for i in ids])
        return {i: decode_record(raw) for i, raw in zip(ids, raws, strict=True) if raw}
