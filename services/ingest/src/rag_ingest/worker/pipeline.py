"""One document through parse -> chunk -> embed -> store -> switch, with progress and timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rag_config import IngestSettings
from rag_core.chroma import BatchingUpserter, ChromaClient, Metadata
from rag_core.embedding.base import Embedder

from rag_ingest.chunking import Chunk, chunk_sections
from rag_ingest.collections.registry import Collection
from rag_ingest.documents.store import (
    DocumentRecord,
    DocumentStore,
    chunk_id,
    version_tag,
)
from rag_ingest.jobs.model import JobRecord
from rag_ingest.metrics import (
    CHUNKS_EMBEDDED,
    DOCUMENTS_DEDUPLICATED,
    EMBED_BATCH_SECONDS,
    STAGE_DURATION,
    TOKENS_EMBEDDED,
)
from rag_ingest.parsing import ParsedDocument, ParseError, ParseLimits, parse_document

Progress = Callable[[str, float], Awaitable[None]]
EMBED_GROUP = 128  # chunks embedded (and stored) per step, so progress moves visibly


class BadDocument(Exception):
    """The document itself is the problem: retrying cannot help. The message says why."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + elapsed, 4)
        STAGE_DURATION.labels(stage).observe(elapsed)


def parse_limits(settings: IngestSettings) -> ParseLimits:
    return ParseLimits(
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_pdf_pages=settings.max_pdf_pages,
    )


def chunk_metadata(
    job: JobRecord, chunk: Chunk, *, version: str, digest: str, parsed: ParsedDocument
) -> Metadata:
    """What every chunk carries: where it comes from, which version, and the caller's metadata."""
    assert job.document_id is not None
    metadata: Metadata = dict(job.metadata or {})
    metadata.update(
        {
            "_doc": job.document_id,
            "_ver": version_tag(version),
            "_hash": digest,
            "_pos": chunk.position,
            "_tokens": chunk.token_count,
            "_format": parsed.format,
        }
    )
    if chunk.page is not None:
        metadata["_page"] = chunk.page
    if chunk.heading_path:
        metadata["_heading"] = " > ".join(chunk.heading_path)
    if job.source or job.filename:
        metadata["_source"] = job.source or job.filename or ""
    if parsed.title:
        metadata["_title"] = parsed.title[:500]
    return metadata


class IngestPipeline:
    def __init__(
        self,
        settings: IngestSettings,
        documents: DocumentStore,
        chroma: ChromaClient,
        embedders: Callable[[str], Embedder],
    ) -> None:
        self.settings = settings
        self.documents = documents
        self.chroma = chroma
        self.embedders = embedders
        self.upserter = BatchingUpserter(chroma)

    async def run(
        self,
        *,
        job: JobRecord,
        collection: Collection,
        payload: bytes,
        digest: str,
        version: str,
        progress: Progress,
    ) -> dict[str, Any]:
        """Ingest one document version; returns the job result."""
        assert job.document_id is not None
        timings = Timings()
        doc_id = job.document_id

        # Cheap checks first: the same content already stored needs no parsing at all.
        current = await self.documents.get(collection.name, doc_id)
        if current is not None and current.version_hash == version:
            DOCUMENTS_DEDUPLICATED.inc()
            return {
                "status": "unchanged",
                "document_id": doc_id,
                "version": current.version,
                "chunks_created": 0,
                "chunks": current.chunk_count,
            }
        owner = await self.documents.owner_of(collection.name, digest)
        if owner is not None and owner != doc_id:
            DOCUMENTS_DEDUPLICATED.inc()
            return {
                "status": "duplicate",
                "document_id": doc_id,
                "duplicate_of": owner,
                "chunks_created": 0,
            }

        await progress("parsing", 0.05)
        started = time.perf_counter()
        try:
            parsed = await asyncio.to_thread(
                parse_document,
                payload,
                filename=job.filename,
                content_type=job.content_type,
                limits=parse_limits(self.settings),
            )
        except ParseError as exc:
            raise BadDocument("parsing", str(exc)) from None
        timings.record("parse", started)

        embedder = self.embedders(collection.embedding_model)
        await progress("chunking", 0.15)
        started = time.perf_counter()
        chunks = await asyncio.to_thread(
            chunk_sections,
            parsed.sections,
            embedder.token_spans,
            size=self.settings.chunk_size_tokens,
            overlap=self.settings.chunk_overlap_tokens,
        )
        timings.record("chunk", started)
        if not chunks:
            raise BadDocument("chunking", "the document contains no text to index")
        if len(chunks) > self.settings.max_chunks_per_document:
            raise BadDocument(
                "chunking",
                f"the document makes {len(chunks)} chunks; the limit is "
                f"{self.settings.max_chunks_per_document} (MAX_CHUNKS_PER_DOCUMENT)",
            )

        ids = [chunk_id(doc_id, version, c.position) for c in chunks]
        metadatas = [
            chunk_metadata(job, c, version=version, digest=digest, parsed=parsed) for c in chunks
        ]
        texts = [c.text for c in chunks]
        for start in range(0, len(chunks), EMBED_GROUP):
            end = start + EMBED_GROUP
            await progress("embedding", 0.2 + 0.7 * start / len(chunks))
            started = time.perf_counter()
            vectors = await embedder.embed_documents(texts[start:end])
            EMBED_BATCH_SECONDS.observe(time.perf_counter() - started)
            timings.record("embed", started)
            started = time.perf_counter()
            await self.upserter.upsert(
                collection.chroma_id,
                ids[start:end],
                vectors,
                texts[start:end],
                metadatas[start:end],
            )
            timings.record("store", started)

        await progress("publishing", 0.95)
        started = time.perf_counter()
        record = DocumentRecord(
            id=doc_id,
            version=0,
            content_hash=digest,
            version_hash=version,
            chunk_count=len(chunks),
            token_count=sum(c.token_count for c in chunks),
            format=parsed.format,
            title=parsed.title,
            source=job.source or job.filename,
            filename=job.filename,
            metadata=job.metadata,
            sequence=job.sequence,
        )
        outcome = await self.documents.switch_to(collection.name, record)
        timings.record("publish", started)
        if outcome.status == "superseded":
            # A newer change of this document was requested: ours must never become visible.
            newest = outcome.previous
            if newest is None or newest.version_hash != version:
                await self.chroma.delete(collection.chroma_id, ids=ids)
            return {
                "status": "superseded",
                "document_id": doc_id,
                "chunks_created": 0,
                "timings": timings.seconds,
            }
        if outcome.status == "unchanged":
            DOCUMENTS_DEDUPLICATED.inc()
            return {
                "status": "unchanged",
                "document_id": doc_id,
                "chunks_created": 0,
                "version": outcome.previous.version if outcome.previous else None,
            }
        CHUNKS_EMBEDDED.inc(len(chunks))
        TOKENS_EMBEDDED.inc(record.token_count)
        result: dict[str, Any] = {
            "status": outcome.status,
            "document_id": doc_id,
            "version": record.version,
            "format": parsed.format,
            "title": parsed.title,
            "chunks_created": len(chunks),
            "tokens": record.token_count,
            "collection_version": outcome.collection_version,
            "timings": timings.seconds,
        }
        if parsed.format == "pdf":
            result["pages"] = max((s.page or 0) for s in parsed.sections)
        if outcome.previous is not None:
            result["replaced_version"] = outcome.previous.version
            result["previous_version_tag"] = outcome.previous.version_tag
        return result
