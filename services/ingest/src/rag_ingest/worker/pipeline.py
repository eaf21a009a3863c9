"""One document through parse -> chunk -> embed -> store -> switch, with progress and timings."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rag_config import IngestSettings
from rag_core.catalog import Collection, DocumentRecord
from rag_core.chunks import ChunkStore, StoredChunk, chunk_id, embedded_text, version_tag
from rag_core.embedding.base import Embedder
from rag_core.embedding.models import model_revision
from rag_telemetry import get_logger

from rag_ingest.chunking import Chunk, TooManyChunks, ocr_metadata
from rag_ingest.jobs.model import JobRecord
from rag_ingest.metrics import (
    CHUNKS_EMBEDDED,
    DOCUMENTS_DEDUPLICATED,
    EMBED_BATCH_SECONDS,
    STAGE_DURATION,
    TOKENS_EMBEDDED,
)
from rag_ingest.parsing import OcrLimits, ParseError, ParseLimits, detect_format
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.preparing import ChunkLimits, PreparedDocument, prepare_document, read_progress
from rag_ingest.submissions import is_blank
from rag_ingest.versions import Cleanup, DocumentStore, is_named

log = get_logger("rag.worker")

Progress = Callable[[str, float], Awaitable[None]]
EMBED_GROUP = 128  # chunks embedded (and stored) per step, so progress moves visibly
INLINE_TEXT_BYTES = 64 * 1024
OCR_PROGRESS_SECONDS = 0.5  # how often a parse is looked at for the pages OCR has read


class BadDocument(Exception):
    """The document itself is the problem: retrying cannot help. The message says why."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, started: float) -> None:
        self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, elapsed: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + elapsed, 4)
        STAGE_DURATION.labels(stage).observe(elapsed)


def parse_limits(settings: IngestSettings) -> ParseLimits:
    ocr = OcrLimits(
        languages=settings.ocr_languages,
        max_pages=settings.ocr_max_pages,
        max_pixels=settings.ocr_max_pixels,
        dpi=settings.ocr_dpi,
        page_timeout_seconds=settings.ocr_page_timeout_seconds,
    )
    return ParseLimits(
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_pdf_pages=settings.max_pdf_pages,
        max_archive_entries=settings.max_archive_entries,
        ocr=ocr if settings.ocr_enabled else None,
    )


def chunk_limits(settings: IngestSettings) -> ChunkLimits:
    return ChunkLimits(
        size=settings.chunk_size_tokens,
        overlap=settings.chunk_overlap_tokens,
        max_chars=settings.chunk_max_chars,
        max_chunks=settings.max_chunks_per_document,
    )


def _words(payload: bytes, title: str) -> str | None:
    """The payload's words, one space apart, if it may be ``title`` (no longer than it may
    be in UTF-8): else None, without decoding it."""
    if len(payload) > 4 * len(title) + 64:
        return None
    return " ".join(payload.decode("utf-8", "replace").split())


def chunk_header(title: str | None, heading_path: Sequence[str], limit: int) -> str | None:
    """The title and the headings above a chunk, each once ("Gateway > Credentials"; a
    Markdown document's title is its first heading), cut to ``limit`` characters."""
    parts: list[str] = []
    for part in (title, *heading_path):
        text = " ".join((part or "").split())
        if text and text not in parts:
            parts.append(text)
    return " > ".join(parts)[:limit].strip() or None


def stored_heading(heading_path: Sequence[str], limit: int) -> str | None:
    """The headings above a chunk ("Gateway > Credentials"), cut to ``limit`` characters
    (MAX_TITLE_CHARS): every chunk of a section stores it, so a heading of 300 KB on one line
    would be stored, and returned, once per chunk."""
    return " > ".join(part[:limit] for part in heading_path)[:limit].strip() or None


def stored_chunk(
    job: JobRecord,
    chunk: Chunk,
    *,
    tag: str,
    digest: str,
    prepared: PreparedDocument,
    heading_chars: int,
    title: str | None = None,
    header_chars: int = 0,
    header_embedded: bool = True,
    revision: str = "",
) -> StoredChunk:
    """What every chunk carries: where it comes from, which version, the caller's metadata,
    its heading path (``heading_chars`` of it), the header it is indexed after
    (``header_chars`` of it; 0: none), by BM25 and, with ``header_embedded``, by the embedder
    too, and the revision of the model it is embedded with."""
    assert job.document_id is not None
    return StoredChunk(
        id=chunk_id(job.document_id, tag, chunk.position),
        document_id=job.document_id,
        version=tag,
        position=chunk.position,
        text=chunk.text,
        metadata=dict(job.metadata or {}) | ocr_metadata(chunk),
        tokens=chunk.token_count,
        content_hash=digest,
        format=prepared.format,
        page=chunk.page,
        heading=stored_heading(chunk.heading_path, heading_chars),
        header=chunk_header(title, chunk.heading_path, header_chars),
        header_embedded=header_embedded,
        model_revision=revision,
    )


class IngestPipeline:
    def __init__(
        self,
        settings: IngestSettings,
        documents: DocumentStore,
        chunks: ChunkStore,
        embedders: Callable[[str], Embedder],
        parsers: ParserPool,
        *,
        find_collection: Callable[[str, str], Awaitable[Collection | None]] | None = None,
    ) -> None:
        self.settings = settings
        self.documents = documents
        self.chunks = chunks
        self.embedders = embedders
        self.parsers = parsers
        self.find_collection = find_collection

    async def run(
        self, *, job: JobRecord, collection: Collection, payload: bytes, progress: Progress
    ) -> dict[str, Any]:
        """Ingest one document version; returns the job result."""
        assert job.document_id is not None
        timings = Timings()
        doc_id = job.document_id
        options = job.options or {}
        digest, version = str(options["content_hash"]), str(options["version_hash"])
        tag = version_tag(job.sequence)

        # Cheap checks first: the same content already stored needs no parsing at all.
        tenant = collection.namespace
        current = await self.documents.get(tenant, collection.name, doc_id)
        if current is not None and current.tag == tag:
            # This very change is active: an earlier delivery switched it in, then stopped.
            return self._published(current, collection.version, timings, None)
        if current is not None and current.version_hash == version:
            DOCUMENTS_DEDUPLICATED.inc()
            return _unchanged(current)
        blank = is_blank(payload)  # (JSON with no text nor title: stored empty)
        # (An empty version owns no content: no two empty documents are copies of each other.)
        owner = None if blank else await self.documents.owner_of(tenant, collection.name, digest)
        if owner == doc_id:
            owner = None
        if current is None and owner is not None and not is_named(doc_id, digest):
            DOCUMENTS_DEDUPLICATED.inc()
            return _duplicate(doc_id, owner)

        await progress("parsing", 0.05)
        if blank:
            # JSON with no text nor title (the API takes no other empty document): a version
            # with no chunks, which no search finds.
            prepared = PreparedDocument("text", None, None, [], 0.0, 0.0)
        else:
            try:
                prepared = await self._prepare(job, payload, progress)
            except ParseError as exc:
                raise BadDocument("parsing", str(exc)) from None
            except TooManyChunks as exc:
                raise BadDocument("chunking", str(exc)) from None
            if not prepared.chunks:
                raise BadDocument("chunking", "the document contains no text to index")
        timings.add("parse", prepared.parse_seconds)
        timings.add("chunk", prepared.chunk_seconds)
        embedder = self.embedders(collection.embedding_model)
        await progress("chunking", 0.15)

        # Listed for cleanup before any is written: if this change never becomes active
        # (superseded, failed, or its worker dies), its chunks are removed whatever happens.
        own = job_cleanup(job, collection)
        await self.documents.reserve_cleanup(own, time.time() + self.settings.version_grace_seconds)
        title = self.title_of(job, prepared)
        # A document of its title alone (JSON with a title and no text) is not indexed after
        # its title again: the title is said once.
        header_title = None if title is not None and _words(payload, title) == title else title
        chunks = [
            stored_chunk(
                job,
                c,
                tag=tag,
                digest=digest,
                prepared=prepared,
                heading_chars=self.settings.max_title_chars,
                title=header_title,
                header_chars=self.settings.chunk_header_max_chars,
                header_embedded=self.settings.chunk_header_embedded,
                revision=model_revision(collection.embedding_model),
            )
            for c in prepared.chunks
        ]
        texts = [embedded_text(c) for c in chunks]
        # The same text is stored under another id already: its vectors need no embedding.
        known = await self._vectors_of(collection, owner) if owner else {}
        reused = 0
        for start in range(0, len(chunks), EMBED_GROUP):
            end = start + EMBED_GROUP
            await progress("embedding", 0.2 + 0.7 * start / len(chunks))
            started = time.perf_counter()
            group = texts[start:end]
            missing = [t for t in group if t not in known]
            if missing:
                embedded = await embedder.embed_documents(missing)
                EMBED_BATCH_SECONDS.observe(time.perf_counter() - started)
                fresh = dict(zip(missing, embedded, strict=True))
            else:
                fresh = {}
            reused += len(group) - len(missing)
            vectors = np.stack([known[t] if t in known else fresh[t] for t in group])
            timings.record("embed", started)
            started = time.perf_counter()
            await self.chunks.write(collection.chroma_id, chunks[start:end], vectors)
            timings.record("store", started)

        await progress("publishing", 0.95)
        started = time.perf_counter()
        record = DocumentRecord(
            id=doc_id,
            version=0,
            tag=tag,
            content_hash=digest,
            version_hash=version,
            chunk_count=len(chunks),
            token_count=sum(c.tokens for c in chunks),
            format=prepared.format,
            title=title,
            source=job.source or job.filename,
            filename=job.filename,
            metadata=job.metadata,
            sequence=job.sequence,
        )
        outcome = await self.documents.switch_to(
            tenant, collection.name, collection.chroma_id, record, own
        )
        timings.record("publish", started)
        if outcome.status == "active" and outcome.previous is not None:
            # Another run of this job (a redelivery) switched this change in meanwhile: the
            # chunks we wrote are the live ones, under the same ids. Never discard them.
            return self._published(outcome.previous, collection.version, timings, None)
        if outcome.status in ("created", "replaced"):
            CHUNKS_EMBEDDED.inc(len(chunks) - reused)
            TOKENS_EMBEDDED.inc(record.token_count)
            result = self._published(record, outcome.collection_version, timings, outcome.previous)
            result["status"] = outcome.status
            if not chunks:
                result["empty"] = True  # no text: stored, and found by no search
            if owner is not None:
                result["same_text_as"] = owner
                result["chunks_reused"] = reused
            if prepared.pages is not None:
                result["pages"] = prepared.pages
            return result
        # Our chunks will never be read: remove them now (the listed cleanup is the fallback).
        await self._discard(own, [c.id for c in chunks])
        if outcome.status == "gone":
            moved = await self._moved(collection)
            if moved is not None:
                # Re-embedded while this job ran: its chunks went to the former Chroma
                # collection, with the former model. Write them again where it is now.
                log.info(
                    "collection_moved", collection=collection.name, model=moved.embedding_model
                )
                return await self.run(job=job, collection=moved, payload=payload, progress=progress)
            raise BadDocument("publishing", f"collection {collection.name!r} was deleted")
        if outcome.status == "duplicate":
            DOCUMENTS_DEDUPLICATED.inc()
            return _duplicate(doc_id, outcome.duplicate_of or "")
        if outcome.status == "unchanged" and outcome.previous is not None:
            DOCUMENTS_DEDUPLICATED.inc()
            return _unchanged(outcome.previous)
        # A newer change of this document was requested: ours must never become visible.
        return {
            "status": "superseded",
            "document_id": doc_id,
            "chunks_created": 0,
            "timings": timings.seconds,
        }

    async def _moved(self, collection: Collection) -> Collection | None:
        """The collection as it is now, if a re-embedding switched it to another Chroma
        collection (None: it was deleted)."""
        if self.find_collection is None:
            return None
        now = await self.find_collection(collection.namespace, collection.name)
        if (
            now is None
            or now.chroma_id == collection.chroma_id
            or not now.owns(collection.chroma_id)
        ):
            return None
        return now

    def title_of(self, job: JobRecord, prepared: PreparedDocument) -> str | None:
        """The title sent with the document, else the one parsed from it (a <title> can be any
        length: it is cut to MAX_TITLE_CHARS)."""
        title = " ".join((job.title or prepared.title or "").split())
        return title[: self.settings.max_title_chars] or None

    async def _prepare(
        self, job: JobRecord, payload: bytes, progress: Progress
    ) -> PreparedDocument:
        """Small plain text is prepared right here, in a thread (a linear scan of little text:
        nothing to guard against, and most JSON ingest is that); everything else in the
        killable, memory-limited parser pool, whose pages read by OCR show as the stage
        ``ocr`` (page by page, from 5 % to 15 %)."""
        options: dict[str, Any] = {
            "filename": job.filename,
            "content_type": job.content_type,
            "limits": parse_limits(self.settings),
            "chunking": chunk_limits(self.settings),
        }
        if len(payload) <= INLINE_TEXT_BYTES and self._plain_text(job, payload):
            return await asyncio.to_thread(prepare_document, payload, **options)
        with tempfile.TemporaryDirectory(prefix="rag-parse-") as where:
            pages = Path(where) / "pages"
            parsing = asyncio.ensure_future(
                self.parsers.run(prepare_document, payload, progress_path=str(pages), **options)
            )
            try:
                seen = None
                while not parsing.done():
                    await asyncio.wait([parsing], timeout=OCR_PROGRESS_SECONDS)
                    read = read_progress(pages)
                    if read is not None and read != seen:
                        seen, (done, total) = read, read
                        try:  # best effort: a lost save must not stop the parse
                            await progress("ocr", 0.05 + 0.1 * done / max(total, 1))
                        except Exception as exc:
                            log.warning("ocr_progress_unsaved", error=type(exc).__name__)
                return await parsing
            finally:
                parsing.cancel()

    def _plain_text(self, job: JobRecord, payload: bytes) -> bool:
        """Whether sniffing says plain text. Only sniffing, as this is the event loop: JSON to
        parse, a ZIP directory to list, text that does not decode are the parser pool's to
        read, and to fail with the reason."""
        try:
            kind = detect_format(
                payload,
                filename=job.filename,
                content_type=job.content_type,
                max_archive_entries=self.settings.max_archive_entries,
                sniff=True,
                images=self.settings.ocr_enabled,
            )
        except Exception:  # any failure to sniff: the pool parses it, and says why
            return False
        return kind == "text"

    async def _vectors_of(self, collection: Collection, document_id: str) -> dict[str, Any]:
        """The active chunks' vectors of ``document_id``, by the text each is the embedding
        of (empty if it has none any more: a reader of a moment ago, or Chroma failing, only
        costs an embedding). Keyed so, a vector embedded with its header is never taken for
        the text alone, or the other way round, after CHUNK_HEADER_EMBEDDED changed; and only
        those of the model's current revision (a vector of its 8-bit int8 weights is not the
        7-bit one's)."""
        record = await self.documents.get(collection.namespace, collection.name, document_id)
        if record is None:
            return {}
        try:
            stored = await self.chunks.version(
                collection.chroma_id, document_id, record.tag, vectors=True
            )
        except Exception as exc:
            log.warning("reuse_skipped", error=f"{type(exc).__name__}: {exc}")
            return {}
        revision = model_revision(collection.embedding_model)
        return {
            embedded_text(c): c.vector
            for c in stored
            if c.vector is not None and c.model_revision == revision
        }

    async def _discard(self, own: Cleanup, ids: list[str]) -> None:
        try:
            await self.chunks.delete(own.chroma_id, ids)
        except Exception as exc:  # the listed cleanup will do it later
            log.warning("discard_deferred", error=str(exc))
            await self.documents.cleanup_now(own)
        else:
            await self.documents.finish_cleanup(own)

    @staticmethod
    def _published(
        record: DocumentRecord,
        collection_version: int | None,
        timings: Timings,
        previous: DocumentRecord | None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "status": "replaced" if record.version > 1 else "created",
            "document_id": record.id,
            "version": record.version,
            "format": record.format,
            "title": record.title,
            "chunks_created": record.chunk_count,
            "tokens": record.token_count,
            "collection_version": collection_version,
            "timings": timings.seconds,
        }
        if previous is not None:
            result["replaced_version"] = previous.version
        return result


def job_cleanup(job: JobRecord, collection: Collection) -> Cleanup:
    """The pending cleanup of the chunks this run of ``job`` writes."""
    assert job.document_id is not None
    return Cleanup(
        job.namespace,
        collection.name,
        collection.chroma_id,
        job.document_id,
        version_tag(job.sequence),
        job.id,
        uuid.uuid4().hex[:12],
    )


def _unchanged(current: DocumentRecord) -> dict[str, Any]:
    return {
        "status": "unchanged",
        "document_id": current.id,
        "version": current.version,
        "chunks_created": 0,
        "chunks": current.chunk_count,
    }


def _duplicate(document_id: str, owner: str) -> dict[str, Any]:
    return {
        "status": "duplicate",
        "document_id": document_id,
        "duplicate_of": owner,
        "chunks_created": 0,
    }
