"""/v1/collections: create, list, get, delete."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from rag_config import IngestSettings
from rag_core.catalog import Collection

from rag_ingest.collections.registry import CollectionRegistry


class CollectionCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    embedding_model: str | None = None
    description: str = msgspec.field(default="")


class ReembeddingOut(msgspec.Struct):
    """A re-embedding of the collection that has not switched yet: running, or stopped (its job
    failed) and waiting to be resumed (POST .../reembed again) or cancelled."""

    job_id: str
    embedding_model: str


class CollectionOut(msgspec.Struct):
    name: str
    embedding_model: str
    dimension: int
    created_at: float
    version: int
    document_count: int
    chunk_count: int
    description: str
    reembedding: ReembeddingOut | None = None

    @classmethod
    def of(cls, c: Collection) -> CollectionOut:
        return cls(
            c.name,
            c.embedding_model,
            c.dimension,
            c.created_at,
            c.version,
            c.document_count,
            c.chunk_count,
            c.description,
            ReembeddingOut(c.migration.job_id, c.migration.model) if c.migration else None,
        )


class CollectionList(msgspec.Struct):
    collections: list[CollectionOut]


class CollectionDeleted(msgspec.Struct):
    """What a deleted collection held."""

    deleted: str
    documents: int
    chunks: int


class CollectionController(Controller):
    path = "/v1/collections"
    tags = ["collections"]

    @post("", status_code=HTTP_201_CREATED, summary="Create a collection")
    async def create_collection(
        self,
        data: JSONBody[CollectionCreate],
        registry: NamedDependency[CollectionRegistry],
        settings: NamedDependency[IngestSettings],
        tenant: NamedDependency[str],
    ) -> CollectionOut:
        """The embedding model (default: EMBEDDING_MODEL) stays until a re-embedding moves the
        collection to another one (POST /v1/collections/{name}/reembed)."""
        created = await registry.create(
            tenant,
            data.name,
            data.embedding_model or settings.embedding_model,
            data.description[:1000],
        )
        return CollectionOut.of(created)

    @get("", summary="List collections")
    async def list_collections(
        self, registry: NamedDependency[CollectionRegistry], tenant: NamedDependency[str]
    ) -> CollectionList:
        return CollectionList([CollectionOut.of(c) for c in await registry.all(tenant)])

    @get("/{name:str}", summary="Get a collection with its document and chunk counts")
    async def get_collection(
        self,
        name: FromPath[str],
        registry: NamedDependency[CollectionRegistry],
        tenant: NamedDependency[str],
    ) -> CollectionOut:
        return CollectionOut.of(await registry.get(tenant, name))

    @delete("/{name:str}", status_code=HTTP_200_OK, summary="Delete a collection and all of it")
    async def delete_collection(
        self,
        name: FromPath[str],
        registry: NamedDependency[CollectionRegistry],
        tenant: NamedDependency[str],
    ) -> CollectionDeleted:
        removed = await registry.delete(tenant, name)
        return CollectionDeleted(removed.name, removed.document_count, removed.chunk_count)
