"""The chunk store: what a stored chunk is, and the one place that knows how it is stored.

Every chunk carries, besides its text and vector, the engine's own fields (its document, the
version it belongs to, its position, where it was found) and the caller's metadata. In Chroma
they share one flat metadata map: the engine's fields under keys that start with ``_`` (the
caller's keys never do: ingest refuses them), the caller's as given, so a caller's filter runs
in Chroma as written. Only this module names those keys; everything else reads and writes
``StoredChunk`` through ``ChunkStore``. A second vector backend would be another
implementation of ``ChunkStore``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rag_core.chroma import (
    BatchingUpserter,
    ChromaClient,
    ChromaCollection,
    ChromaRequestError,
    Metadata,
    Records,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

FETCH_DOCUMENTS = 100  # documents per read when loading many documents' chunks


@dataclass(slots=True)
class StoredChunk:
    """One chunk of one version of one document."""

    id: str
    document_id: str
    version: str  # the tag of the change that wrote it (see ``version_tag``)
    position: int
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)  # the caller's own
    tokens: int = 0
    content_hash: str | None = None  # of the whole document
    format: str | None = None
    page: int | None = None
    heading: str | None = None
    # What the chunk is indexed after (its document's title and headings): see indexed_text.
    header: str | None = None
    # Whether its vector embedded the header too (see embedded_text). Chunks stored before
    # CHUNK_HEADER_EMBEDDED existed did: a chunk without the mark reads as True.
    header_embedded: bool = True
    # The revision of the model its vector is of (ModelSpec.revision; "" for none).
    model_revision: str = ""
    # Kept in the document's record now; chunks stored by earlier versions carry them.
    title: str | None = None
    source: str | None = None
    vector: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Neighbour:
    chunk: StoredChunk
    similarity: float  # cosine similarity to the query vector


def version_tag(sequence: int) -> str:
    """The version of the chunks one change writes: its sequence, unique per document."""
    return str(sequence)


def chunk_id(document_id: str, tag: str, position: int) -> str:
    """Deterministic: a job run again writes the same ids (an upsert, never a duplicate)."""
    return hashlib.sha256(f"{document_id}\0{tag}\0{position}".encode()).hexdigest()[:32]


# The engine's fields in the stored metadata. A caller's key never starts with "_".
_DOC, _VER, _POS, _TOKENS, _HASH, _FORMAT = "_doc", "_ver", "_pos", "_tokens", "_hash", "_format"
_PAGE, _HEADING, _TITLE, _SOURCE = "_page", "_heading", "_title", "_source"
_HEADER, _HEADER_EMBEDDED, _REVISION = "_header", "_header_embedded", "_model_revision"


def indexed_text(chunk: StoredChunk) -> str:
    """What BM25 reads of a chunk (and the embedder, unless CHUNK_HEADER_EMBEDDED is false,
    see embedded_text): its header (its document's title and heading path,
    "contextual chunk headers") on a line before its text, so a chunk deep in a document is
    found by the words of the title it sits under. Its own text is what is stored, returned
    and quoted."""
    return f"{chunk.header}\n{chunk.text}" if chunk.header else chunk.text


def embedded_text(chunk: StoredChunk) -> str:
    """What the chunk's vector is the embedding of: its text alone, or after its header too
    where it was stored with ``header_embedded`` (CHUNK_HEADER_EMBEDDED)."""
    return indexed_text(chunk) if chunk.header_embedded else chunk.text


def encode(chunk: StoredChunk) -> Metadata:
    """The flat metadata map a chunk is stored with."""
    metadata: Metadata = dict(chunk.metadata)
    metadata.update(
        {_DOC: chunk.document_id, _VER: chunk.version, _POS: chunk.position, _TOKENS: chunk.tokens}
    )
    if chunk.content_hash is not None:
        metadata[_HASH] = chunk.content_hash
    if chunk.format is not None:
        metadata[_FORMAT] = chunk.format
    if chunk.page is not None:
        metadata[_PAGE] = chunk.page
    if chunk.heading:
        metadata[_HEADING] = chunk.heading
    if chunk.header:
        metadata[_HEADER] = chunk.header
        if not chunk.header_embedded:
            metadata[_HEADER_EMBEDDED] = False
    if chunk.model_revision:
        metadata[_REVISION] = chunk.model_revision
    # Title and source are the document's, kept once in its record (the query service adds
    # them to hits): copied into every chunk, a long source multiplied Chroma's size.
    return metadata


def decode(
    chunk_id: str,
    text: str | None,
    metadata: Mapping[str, Any],
    vector: NDArray[np.float32] | None = None,
) -> StoredChunk:
    return StoredChunk(
        id=chunk_id,
        document_id=str(metadata.get(_DOC, "")),
        version=str(metadata.get(_VER, "")),
        position=int(metadata.get(_POS, 0)),
        text=text or "",
        metadata={k: v for k, v in metadata.items() if not k.startswith("_")},
        tokens=int(metadata.get(_TOKENS, 0)),
        content_hash=_text(metadata.get(_HASH)),
        format=_text(metadata.get(_FORMAT)),
        page=int(metadata[_PAGE]) if _PAGE in metadata else None,
        heading=_text(metadata.get(_HEADING)),
        header=_text(metadata.get(_HEADER)),
        header_embedded=bool(metadata.get(_HEADER_EMBEDDED, True)),
        model_revision=str(metadata.get(_REVISION, "")),
        title=_text(metadata.get(_TITLE)),
        source=_text(metadata.get(_SOURCE)),
        vector=vector,
    )


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _rows(records: Records) -> list[StoredChunk]:
    vectors = records.embeddings
    return [
        decode(
            chunk_id,
            records.documents[i],
            records.metadatas[i],
            vectors[i] if vectors is not None and len(vectors) else None,
        )
        for i, chunk_id in enumerate(records.ids)
    ]


def _version(document_id: str, tag: str) -> dict[str, Any]:
    return {"$and": [{_DOC: document_id}, {_VER: tag}]}


class CollectionMissing(Exception):
    """The store has no such collection (dropped: a re-embedded collection's former one)."""


@runtime_checkable  # Litestar checks a handler's dependencies against their annotations
class ChunkStore(Protocol):
    """Chunks by collection (the store's id of it), document and version."""

    async def create_collection(
        self, name: str, metadata: Mapping[str, Any]
    ) -> ChromaCollection: ...
    async def get_collection(self, name: str) -> ChromaCollection | None: ...
    async def delete_collection(self, name: str) -> bool: ...
    async def write(
        self, collection_id: str, chunks: Sequence[StoredChunk], vectors: NDArray[np.float32]
    ) -> None: ...
    async def get(
        self, collection_id: str, ids: Sequence[str], *, vectors: bool = False
    ) -> list[StoredChunk]: ...
    async def version(
        self, collection_id: str, document_id: str, tag: str, *, vectors: bool = False
    ) -> list[StoredChunk]: ...
    async def versions(
        self, collection_id: str, wanted: Mapping[str, str]
    ) -> dict[str, list[StoredChunk]]: ...
    async def stored_versions(self, collection_id: str, document_id: str) -> set[str]: ...
    async def version_counts(
        self, collection_id: str, document_ids: Sequence[str], *, revision: str | None = None
    ) -> dict[tuple[str, str], int]: ...
    async def nearest(
        self,
        collection_id: str,
        vector: NDArray[np.float32],
        *,
        count: int,
        where: Mapping[str, Any] | None = None,
        vectors: bool = False,
    ) -> list[Neighbour]: ...
    async def versions_matching(
        self, collection_id: str, where: Mapping[str, Any]
    ) -> set[tuple[str, str]]: ...
    async def delete(self, collection_id: str, ids: Sequence[str]) -> int: ...
    async def delete_version(self, collection_id: str, document_id: str, tag: str) -> int: ...
    async def holds_other_revision(self, collection_id: str, revision: str) -> bool: ...


class ChromaChunkStore:
    """``ChunkStore`` on a Chroma server; concurrent writes to one collection are coalesced
    into few large upserts."""

    def __init__(self, chroma: ChromaClient) -> None:
        self.chroma = chroma
        self._upserter = BatchingUpserter(chroma)

    async def create_collection(self, name: str, metadata: Mapping[str, Any]) -> ChromaCollection:
        """Create (cosine space); raises Conflict if the name is taken."""
        return await self.chroma.create_collection(name, metadata)

    async def get_collection(self, name: str) -> ChromaCollection | None:
        return await self.chroma.get_collection(name)

    async def delete_collection(self, name: str) -> bool:
        return await self.chroma.delete_collection(name)

    async def write(
        self, collection_id: str, chunks: Sequence[StoredChunk], vectors: NDArray[np.float32]
    ) -> None:
        """Upsert ``chunks`` with their ``vectors`` (row i is chunk i's)."""
        await self._upserter.upsert(
            collection_id,
            [c.id for c in chunks],
            vectors,
            [c.text for c in chunks],
            [encode(c) for c in chunks],
        )

    async def get(
        self, collection_id: str, ids: Sequence[str], *, vectors: bool = False
    ) -> list[StoredChunk]:
        """The chunks of ``ids`` that exist (in no particular order)."""
        return _rows(await self.chroma.get(collection_id, ids=ids, embeddings=vectors))

    async def version(
        self, collection_id: str, document_id: str, tag: str, *, vectors: bool = False
    ) -> list[StoredChunk]:
        """One version's chunks, in document order."""
        rows = await self.chroma.get(
            collection_id, where=_version(document_id, tag), embeddings=vectors
        )
        return sorted(_rows(rows), key=lambda c: c.position)

    async def versions(
        self, collection_id: str, wanted: Mapping[str, str]
    ) -> dict[str, list[StoredChunk]]:
        """The chunks of each document in ``wanted`` (document -> tag) of that version only,
        in document order; read ``FETCH_DOCUMENTS`` documents at a time. CollectionMissing if
        the store has no such collection."""
        found: dict[str, list[StoredChunk]] = {doc: [] for doc in wanted}
        docs = sorted(wanted)
        for start in range(0, len(docs), FETCH_DOCUMENTS):
            batch = docs[start : start + FETCH_DOCUMENTS]
            where = {_DOC: batch[0]} if len(batch) == 1 else {_DOC: {"$in": batch}}
            try:
                rows = await self.chroma.get(collection_id, where=where)
            except ChromaRequestError as exc:
                if exc.extra.get("chroma_status") == 404:
                    raise CollectionMissing(collection_id) from exc
                raise
            for chunk in _rows(rows):
                if wanted.get(chunk.document_id) == chunk.version:
                    found[chunk.document_id].append(chunk)
        for chunks in found.values():
            chunks.sort(key=lambda c: c.position)
        return found

    async def stored_versions(self, collection_id: str, document_id: str) -> set[str]:
        """The versions of a document that have chunks stored (the active one, and any
        written by a change not switched in yet or not cleaned up yet)."""
        rows = await self.chroma.get(collection_id, where={_DOC: document_id}, documents=False)
        return {str(m[_VER]) for m in rows.metadatas}

    async def version_counts(
        self, collection_id: str, document_ids: Sequence[str], *, revision: str | None = None
    ) -> dict[tuple[str, str], int]:
        """How many chunks each stored (document, version) of ``document_ids`` has; with
        ``revision``, only those whose vector is of that revision of the model."""
        counts: dict[tuple[str, str], int] = {}
        docs = sorted(set(document_ids))
        for start in range(0, len(docs), FETCH_DOCUMENTS):
            batch = docs[start : start + FETCH_DOCUMENTS]
            where = {_DOC: batch[0]} if len(batch) == 1 else {_DOC: {"$in": batch}}
            rows = await self.chroma.get(collection_id, where=where, documents=False)
            for metadata in rows.metadatas:
                if revision is not None and str(metadata.get(_REVISION, "")) != revision:
                    continue
                key = (str(metadata[_DOC]), str(metadata[_VER]))
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def nearest(
        self,
        collection_id: str,
        vector: NDArray[np.float32],
        *,
        count: int,
        where: Mapping[str, Any] | None = None,
        vectors: bool = False,
    ) -> list[Neighbour]:
        """Up to ``count`` chunks nearest ``vector`` (of any version), nearest first;
        ``where`` is a validated filter on the caller's metadata."""
        hits = await self.chroma.query(
            collection_id, vector, n_results=count, where=where, embeddings=vectors
        )
        return [
            Neighbour(chunk, round(1.0 - float(distance), 6))
            for chunk, distance in zip(_rows(hits), hits.distances, strict=True)
        ]

    async def versions_matching(
        self, collection_id: str, where: Mapping[str, Any]
    ) -> set[tuple[str, str]]:
        """(document, tag) of every stored version whose metadata matches ``where`` (every
        chunk of a version carries its document's metadata: the first one is read)."""
        rows = await self.chroma.get(
            collection_id, where={"$and": [{_POS: 0}, dict(where)]}, documents=False
        )
        return {(str(m[_DOC]), str(m[_VER])) for m in rows.metadatas}

    async def delete(self, collection_id: str, ids: Sequence[str]) -> int:
        return await self.chroma.delete(collection_id, ids=ids)

    async def holds_other_revision(self, collection_id: str, revision: str) -> bool:
        """Whether any chunk's vector is of another revision of its model than ``revision``
        (chunks stored before revisions were recorded have none: they are other)."""
        try:
            rows = await self.chroma.get(
                collection_id, where={_REVISION: {"$ne": revision}}, limit=1, documents=False
            )
        except ChromaRequestError as exc:
            if exc.extra.get("chroma_status") == 404:
                raise CollectionMissing(collection_id) from exc
            raise
        return bool(rows.ids)

    async def delete_version(self, collection_id: str, document_id: str, tag: str) -> int:
        """Remove one version's chunks; 0 if its collection is gone (and they with it)."""
        try:
            return await self.chroma.delete(collection_id, where=_version(document_id, tag))
        except ChromaRequestError:
            return 0
