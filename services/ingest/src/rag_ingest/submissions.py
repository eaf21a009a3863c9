"""Documents submitted for ingest: checked once, then stored as jobs and enqueued.

Both the API (documents/service.py) and the worker's crawler (fetching/crawl.py, for every
page it finds) submit through ``JobSubmitter``. A job is enqueued only after its record and its
bytes are stored; if the enqueue itself is lost (Redis failover, crash), the reconciler
re-enqueues any queued job arq does not know.
"""

from __future__ import annotations

import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from arq.connections import ArqRedis
from rag_config import IngestSettings
from rag_core.catalog import Collection
from rag_core.embedding.models import model_revision
from rag_core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType, field_errors
from rag_core.filters import INT64  # the integers Chroma stores

from rag_ingest.jobs.model import JobKind, JobRecord
from rag_ingest.jobs.store import JobStore
from rag_ingest.parsing import UnsupportedFormat, detect_format
from rag_ingest.versions import DocumentStore, content_hash, derived_id, version_hash

# Any printable character but / \ ? #: a corpus's own ids are kept as they are (BEIR's
# DBPedia-entity has "<dbpedia:Animalia_(book)>", its FEVER sets Wikipedia titles with
# accents, apostrophes and brackets). Never '/' (an id is one path segment; the gateway refuses
# an encoded one), nor '.' or '..' (a dot segment), nor '?' and '#', which end a path written
# unencoded; '%' is kept ("100%"): every server on the way decodes a path once. No control,
# format or space character (unseen, or a header split), nor U+FFFD, which is what a byte
# that was not UTF-8 became (Latin-1 "Beyonc%E9" and "Beyonc%E8" would be one id).
DOCUMENT_ID_MAX_CHARS = 256
_ID_REFUSED = frozenset("/\\?#\ufffd")
# '.' and '..' are dot segments; 'upload' and 'url' name the ingest routes at the same place
# (POST .../documents/upload), so a document so named could not be fetched or deleted.
_ID_RESERVED = frozenset({".", "..", "upload", "url"})
_ID_INVISIBLE = ("C", "Z")  # Unicode categories: control, format, unassigned...; separators
DOCUMENT_ID_RULE = (
    f"1-{DOCUMENT_ID_MAX_CHARS} characters, none of them a space, a control or format "
    "character (or one this server's Unicode tables do not know), U+FFFD or / \\ ? #, and "
    "not . .. upload or url"
)


def valid_document_id(document_id: str) -> bool:
    return (
        0 < len(document_id) <= DOCUMENT_ID_MAX_CHARS
        and document_id not in _ID_RESERVED
        and not any(
            ch in _ID_REFUSED or unicodedata.category(ch)[0] in _ID_INVISIBLE for ch in document_id
        )
    )


def check_document_id(document_id: str, field: str) -> None:
    """422 naming ``field`` unless ``document_id`` may be one."""
    if not valid_document_id(document_id):
        raise InvalidInput.for_field(
            field,
            DOCUMENT_ID_RULE,
            detail=f"{field}: document id {document_id!r} is not allowed: {DOCUMENT_ID_RULE}",
        )


METADATA_KEY_RULE = (
    "metadata keys are 1-128 characters and may not start with '_', '$' or '#' "
    "or with 'chroma:' (reserved by the store)"
)
PLAIN_TEXT = "text/plain; charset=utf-8"


@dataclass
class Submission:
    """One document to ingest, already read into memory."""

    payload: bytes
    where: str  # where it came from in the request, for error messages
    document_id: str | None = None
    filename: str | None = None
    content_type: str | None = None
    source: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def task_of(record: JobRecord) -> str:
    """The worker function that runs a job: a re-embedding has its own (and its own timeout)."""
    return "reembed_collection" if record.kind == "reembed" else "ingest_document"


def text_or_title(text: str, title: str | None) -> bytes:
    """A JSON document's text, or its title where it has none (a record of a title alone, as
    some BEIR corpora have and as a catalogue of papers without abstracts does: indexed by its
    title rather than refused). With neither, the document is stored empty (no chunks)."""
    if text.strip():
        return text.encode("utf-8")
    return (title if title and title.strip() else "").encode("utf-8")


def is_blank(payload: bytes) -> bool:
    """No text at all: empty, or ASCII white space only (what ``text_or_title`` leaves of a
    JSON document with neither text nor title)."""
    return not payload or payload.isspace()


def is_json_text(item: Submission) -> bool:
    """A document sent as JSON text (not a file): blank, it is a document with no text, stored
    empty (as five records of FiQA's BEIR corpus are), not a refusal of the whole batch. It
    needs an id (its bytes cannot name it). An empty file is still refused."""
    return item.content_type == PLAIN_TEXT and item.filename is None


def new_job_id() -> str:
    # Time-ordered (sortable in listings), unique without coordination.
    return f"{int(time.time() * 1000):013x}{uuid.uuid4().hex[:12]}"


def check_metadata(metadata: dict[str, Any], where: str, limit: int) -> None:
    """Only what the chunk store keeps as given: refused here (422 naming the key), never
    accepted and then failed (or silently changed) by Chroma in the worker."""
    for key, value in metadata.items():
        if not key or len(key) > 128 or key[0] in "_$#" or key.lower().startswith("chroma:"):
            raise InvalidInput.for_field(
                f"{where}.{key}",
                "reserved or invalid key",
                detail=f"{where}.{key}: {METADATA_KEY_RULE}",
            )
        whole = isinstance(value, int) and not isinstance(value, bool)
        if whole and not INT64[0] <= value <= INT64[1]:
            raise InvalidInput.for_field(
                f"{where}.{key}",
                "integer too large",
                detail=f"{where}.{key}: integers must fit in 64 bits (send larger ones as text)",
            )
    size = len(msgspec.json.encode(metadata))
    if size > limit:
        raise PayloadTooLarge(
            f"{where} is {size} bytes as JSON; the limit is {limit} (MAX_METADATA_BYTES)",
            extra={"limit": "MAX_METADATA_BYTES", "max_bytes": limit},
        )


def check_length(value: str | None, field: str, limit: int, setting: str) -> None:
    """A free-text field within its limit (422 naming the field and the setting)."""
    if value is not None and len(value) > limit:
        raise InvalidInput(
            f"{field} is {len(value)} characters; the limit is {limit} ({setting})",
            extra={**field_errors(field, f"longer than {limit} characters"), "limit": setting},
        )


def check_batch_size(count: int, settings: IngestSettings) -> None:
    limit = settings.max_documents_per_batch
    if count > limit:
        raise PayloadTooLarge(
            f"{count} documents in one request; the limit is {limit} (MAX_DOCUMENTS_PER_BATCH)",
            extra={"limit": "MAX_DOCUMENTS_PER_BATCH", "max_documents": limit},
        )
    if count == 0:
        raise InvalidInput.for_field("documents", "empty", detail="no documents in the request")


def check_submissions(items: Sequence[Submission], settings: IngestSettings) -> None:
    """Everything checkable before anything is written: nothing is half-accepted."""
    check_batch_size(len(items), settings)
    seen: dict[str, str] = {}
    for item in items:
        check_length(
            item.filename,
            f"{item.where}.filename",
            settings.max_filename_chars,
            "MAX_FILENAME_CHARS",
        )
        check_length(
            item.source, f"{item.where}.source", settings.max_source_chars, "MAX_SOURCE_CHARS"
        )
        check_length(item.title, f"{item.where}.title", settings.max_title_chars, "MAX_TITLE_CHARS")
        blank = is_blank(item.payload)
        if blank and not is_json_text(item):
            raise InvalidInput.for_field(item.where, "empty", detail=f"{item.where} is empty")
        if blank and item.document_id is None:
            raise InvalidInput.for_field(
                f"{item.where}.id",
                "required for a document with no text",
                detail=f"{item.where} has no text nor title: give it an id to store it empty "
                "(content alone names a document, and there is none)",
            )
        if len(item.payload) > settings.max_file_bytes:
            raise PayloadTooLarge(
                f"{item.where} is {len(item.payload)} bytes; the limit is "
                f"{settings.max_file_bytes} (MAX_FILE_BYTES)",
                extra={"limit": "MAX_FILE_BYTES", "max_bytes": settings.max_file_bytes},
            )
        if item.document_id is not None:
            check_document_id(item.document_id, f"{item.where}.id")
        check_metadata(item.metadata, f"{item.where}.metadata", settings.max_metadata_bytes)
        doc_id = item.document_id or derived_id(item.payload)
        if doc_id in seen:
            raise InvalidInput.for_field(
                item.where,
                "duplicate document",
                detail=f"{item.where} and {seen[doc_id]} are the same document ({doc_id!r})",
            )
        seen[doc_id] = item.where
    for item in items:
        if item.content_type != PLAIN_TEXT or item.filename is not None:
            check_supported(item, settings.max_archive_entries, images=settings.ocr_enabled)


def check_supported(item: Submission, max_archive_entries: int, *, images: bool) -> None:
    """Refuse what no parser can read now (415), instead of a job that will surely fail. Only
    bounded sniffing here: this process serves every other request."""
    try:
        detect_format(
            item.payload,
            filename=item.filename,
            content_type=item.content_type,
            max_archive_entries=max_archive_entries,
            sniff=True,
            images=images,
        )
    except UnsupportedFormat as exc:
        raise UnsupportedMediaType(f"{item.where}: {exc}") from None
    except Exception:  # noqa: S110 - anything else is for the worker to explain
        pass


class JobSubmitter:
    """Checks submissions, stores each as a job (record and bytes), then enqueues them."""

    def __init__(
        self,
        settings: IngestSettings,
        arq: ArqRedis,
        documents: DocumentStore,
        jobs: JobStore,
    ) -> None:
        self.settings = settings
        self.arq = arq
        self.documents = documents
        self.jobs = jobs

    async def submit(
        self,
        collection: Collection,
        items: Sequence[Submission],
        *,
        kind: JobKind = "ingest",
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> list[JobRecord]:
        check_submissions(items, self.settings)
        records = [
            await self._store(collection, item, kind, request_id, traceparent) for item in items
        ]
        for record in records:
            await self.enqueue(record)
        return records

    async def enqueue(self, record: JobRecord) -> None:
        await self.arq.enqueue_job(task_of(record), record.id, _job_id=record.arq_job_id)

    def _header_inputs(self) -> dict[str, Any]:
        """What of the chunk headers shapes the stored version: their length and whether the
        embedder reads them (marked only when it does not, so the versions stored before
        CHUNK_HEADER_EMBEDDED existed, all with their headers embedded, keep their hash)."""
        chars = self.settings.chunk_header_max_chars
        if not chars:
            return {}
        embedded = self.settings.chunk_header_embedded
        return {"chunk_headers": chars} | ({} if embedded else {"header_embedded": False})

    async def _store(
        self,
        collection: Collection,
        item: Submission,
        kind: JobKind,
        request_id: str | None,
        traceparent: str | None,
    ) -> JobRecord:
        doc_id = item.document_id or derived_id(item.payload)
        digest = content_hash(item.payload)
        # The file name is not part of a version: the same bytes under another name are the
        # same document ("unchanged"), as are the same bytes with a different content type.
        version = version_hash(
            digest,
            metadata=item.metadata,
            source=item.source,
            **({"title": item.title} if item.title is not None else {}),
            model=collection.embedding_model,
            # (only where the model was revised: others keep the hashes stored before)
            **(
                {"model_revision": revision}
                if (revision := model_revision(collection.embedding_model))
                else {}
            ),
            chunk_size=self.settings.chunk_size_tokens,
            chunk_overlap=self.settings.chunk_overlap_tokens,
            **self._header_inputs(),
        )
        record = JobRecord(
            id=new_job_id(),
            kind=kind,
            collection=collection.name,
            namespace=collection.namespace,
            document_id=doc_id,
            max_attempts=self.settings.job_max_tries,
            sequence=await self.documents.next_sequence(
                collection.namespace, collection.name, doc_id
            ),
            source=item.source,
            title=item.title,
            filename=item.filename,
            content_type=item.content_type,
            metadata=item.metadata or None,
            options={
                "content_hash": digest,
                "version_hash": version,
                "bytes": len(item.payload),
                "chroma_id": collection.chroma_id,
            },
            request_id=request_id,
            traceparent=traceparent,
        )
        await self.jobs.create(record, item.payload)
        return record
