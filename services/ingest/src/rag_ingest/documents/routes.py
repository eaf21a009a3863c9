"""/v1/collections/{collection}/documents: ingest (JSON, files, URLs), list, get, replace,
delete. Each handler reads the request into a call of documents/service.py."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from rag_core.catalog import DocumentRecord
from rag_core.errors import InvalidInput, UnsupportedMediaType
from rag_core.filters import validate_filter
from rag_core.quota import INGEST_QUOTA_HEADER, QuotaGrant
from rag_telemetry import current_request_id, current_traceparent

from rag_ingest.chunking import ocr_confidence
from rag_ingest.documents.forms import read_upload_form
from rag_ingest.documents.service import DocumentService, IngestService
from rag_ingest.idempotency import IdempotencyGuard, fingerprint
from rag_ingest.jobs.model import JobRecord
from rag_ingest.submissions import PLAIN_TEXT, Submission, check_document_id, text_or_title

MetadataValue = str | int | float | bool
MAX_OFFSET = 2**31 - 1


class DocumentIn(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    id: str | None = None
    metadata: dict[str, MetadataValue] | None = None
    source: str | None = None
    title: str | None = None


class DocumentBatch(msgspec.Struct, forbid_unknown_fields=True):
    documents: list[DocumentIn]


class DocumentReplace(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    metadata: dict[str, MetadataValue] | None = None
    source: str | None = None
    title: str | None = None


class UrlIngest(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    max_depth: Annotated[int, msgspec.Meta(ge=0, le=3)] = 0
    same_domain: bool = True
    metadata: dict[str, MetadataValue] | None = None


class JobRef(msgspec.Struct):
    job_id: str
    document_id: str | None
    state: str
    status_url: str
    events_url: str

    @classmethod
    def of(cls, record: JobRecord) -> JobRef:
        return cls(
            record.id,
            record.document_id,
            record.state,
            f"/v1/jobs/{record.id}",
            f"/v1/jobs/{record.id}/events",
        )


class IngestAccepted(msgspec.Struct):
    collection: str
    jobs: list[JobRef]


class ChunkOut(msgspec.Struct, omit_defaults=True):
    id: str
    position: int
    text: str
    tokens: int
    page: int | None = None
    heading: str | None = None
    content_hash: str | None = None
    header: str | None = None  # what the chunk is indexed after: title > headings
    ocr_confidence: float | None = None  # read by OCR: Tesseract's mean word confidence


class DocumentOut(msgspec.Struct, omit_defaults=True):
    id: str
    version: int
    chunk_count: int
    token_count: int
    created_at: float
    updated_at: float
    format: str | None = None
    title: str | None = None
    source: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] | None = None
    chunks: list[ChunkOut] | None = None

    @classmethod
    def of(cls, r: DocumentRecord, chunks: list[ChunkOut] | None = None) -> DocumentOut:
        return cls(
            r.id,
            r.version,
            r.chunk_count,
            r.token_count,
            r.created_at,
            r.updated_at,
            r.format,
            r.title,
            r.source,
            r.filename,
            r.metadata,
            chunks,
        )


class DocumentPage(msgspec.Struct):
    documents: list[DocumentOut]
    total: int
    offset: int
    limit: int


class DocumentDeleted(msgspec.Struct):
    deleted: str
    version: int | None
    chunks: int


async def _accepted(
    request: Request[Any, Any, Any],
    idempotency: IdempotencyGuard,
    tenant: str,
    collection: str,
    request_fingerprint: str,
    submit: Callable[..., Awaitable[list[JobRecord]]],
) -> Response[IngestAccepted]:
    """202 with the jobs ``submit`` made (it is passed the request's ids), or, for an
    Idempotency-Key seen before with the same request, that first answer again."""

    async def work() -> IngestAccepted:
        records = await submit(request_id=current_request_id(), traceparent=current_traceparent())
        return IngestAccepted(collection, [JobRef.of(record) for record in records])

    outcome = await idempotency.run(
        tenant,
        request.headers.get("idempotency-key"),
        request_fingerprint,
        work,
        status=HTTP_202_ACCEPTED,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return Response(outcome.body, status_code=outcome.status, headers=headers)


class DocumentController(Controller):
    path = "/v1/collections/{collection:str}/documents"
    tags = ["documents"]

    @post("", summary="Ingest a batch of text documents", status_code=HTTP_202_ACCEPTED)
    async def ingest_json(
        self,
        collection: FromPath[str],
        data: JSONBody[DocumentBatch],
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
        idempotency: NamedDependency[IdempotencyGuard],
        tenant: NamedDependency[str],
    ) -> Response[IngestAccepted]:
        """202 with one job per document. Honours `Idempotency-Key`."""
        items = [
            Submission(
                payload=text_or_title(doc.text, doc.title),
                where=f"documents[{i}]",
                document_id=doc.id,
                content_type=PLAIN_TEXT,
                source=doc.source,
                title=doc.title,
                metadata=dict(doc.metadata or {}),
            )
            for i, doc in enumerate(data.documents)
        ]
        return await _accepted(
            request,
            idempotency,
            tenant,
            collection,
            fingerprint("json", collection, msgspec.to_builtins(data)),
            functools.partial(ingest.submit, tenant, collection, items),
        )

    @post("/upload", summary="Upload one or more files", status_code=HTTP_202_ACCEPTED)
    async def ingest_files(
        self,
        collection: FromPath[str],
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
        idempotency: NamedDependency[IdempotencyGuard],
        tenant: NamedDependency[str],
    ) -> Response[IngestAccepted]:
        """multipart/form-data: `file` (repeat for several), optional `metadata` (a JSON object
        applied to every file), `source`, and `id` and `title` (only with a single file)."""
        content_type, options = request.content_type
        if content_type != "multipart/form-data":
            raise UnsupportedMediaType("send the files as multipart/form-data")
        if not options.get("boundary"):
            raise InvalidInput.for_field(
                "Content-Type",
                "no boundary",
                detail="multipart/form-data needs a boundary in its Content-Type",
            )
        form = await read_upload_form(
            request.stream(),
            options["boundary"].encode("latin-1"),
            max_parts=ingest.settings.max_documents_per_batch + 10,
        )
        if not form.files:
            raise InvalidInput.for_field(
                "file", "missing", detail="no files: send them in the form field 'file'"
            )
        metadata = _form_metadata(form.fields.get("metadata"))
        source = form.fields.get("source")
        doc_id = form.fields.get("id")
        title = form.fields.get("title")
        for name, value in (("id", doc_id), ("title", title)):
            if value and len(form.files) > 1:
                raise InvalidInput.for_field(
                    name,
                    "several files",
                    detail=f"'{name}' is of one document; it cannot be used with several files",
                )
        items = [
            Submission(
                payload=bytes(upload.data),
                where=f"file[{index}]",
                document_id=doc_id,
                filename=upload.filename,
                content_type=upload.content_type,
                source=source,
                title=title or None,
                metadata=dict(metadata),
            )
            for index, upload in enumerate(form.files)
        ]
        # Everything of each submission, its bytes by their hash: a part's content type and
        # charset decide how the bytes are read, so a change of them is another request.
        request_fingerprint = fingerprint(
            "files",
            collection,
            [
                {
                    **{k: v for k, v in vars(i).items() if k != "payload"},
                    "sha256": hashlib.sha256(i.payload).hexdigest(),
                }
                for i in items
            ],
        )
        return await _accepted(
            request,
            idempotency,
            tenant,
            collection,
            request_fingerprint,
            functools.partial(ingest.submit, tenant, collection, items),
        )

    @post(
        "/url",
        summary="Ingest a web page (and the pages it links to)",
        status_code=HTTP_202_ACCEPTED,
    )
    async def ingest_url(
        self,
        collection: FromPath[str],
        data: JSONBody[UrlIngest],
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
        idempotency: NamedDependency[IdempotencyGuard],
        tenant: NamedDependency[str],
    ) -> Response[IngestAccepted]:
        """The worker fetches it: public addresses only (FETCH_ALLOW_NETWORKS widens that),
        FETCH_MAX_REDIRECTS redirects, MAX_FILE_BYTES per page, FETCH_TIMEOUT_SECONDS, and at
        most FETCH_MAX_PAGES pages. Each page becomes a document whose id derives from its URL.
        Through the gateway, the pages' bytes count against the caller's daily ingest quota."""
        grant = request.headers.get(INGEST_QUOTA_HEADER)

        async def submit(**ids: str | None) -> list[JobRecord]:
            record = await ingest.submit_url(
                tenant,
                collection,
                data.url,
                max_depth=data.max_depth,
                same_domain=data.same_domain,
                metadata=dict(data.metadata or {}),
                quota=QuotaGrant.from_header(grant) if grant else None,
                **ids,
            )
            return [record]

        return await _accepted(
            request,
            idempotency,
            tenant,
            collection,
            fingerprint("url", collection, msgspec.to_builtins(data)),
            submit,
        )

    @get("", summary="List documents (paged; optional metadata filter)")
    async def list_documents(
        self,
        collection: FromPath[str],
        document_service: NamedDependency[DocumentService],
        tenant: NamedDependency[str],
        # Bounded: Redis refuses an index past 64 bits (a 500), and no collection comes near.
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        where: Annotated[str | None, QueryParameter(description="JSON metadata filter")] = None,
    ) -> DocumentPage:
        condition = None if where is None else validate_filter(_json_query(where), path="where")
        records, total = await document_service.page(
            tenant, collection, offset=offset, limit=limit, where=condition
        )
        return DocumentPage([DocumentOut.of(r) for r in records], total, offset, limit)

    @get("/{document_id:str}", summary="A document with its chunks (active version)")
    async def get_document(
        self,
        collection: FromPath[str],
        document_id: FromPath[str],
        document_service: NamedDependency[DocumentService],
        tenant: NamedDependency[str],
        chunks: FromQuery[bool] = True,
    ) -> DocumentOut:
        record, stored = await document_service.get(tenant, collection, document_id, chunks=chunks)
        if stored is None:
            return DocumentOut.of(record)
        return DocumentOut.of(
            record,
            [
                ChunkOut(
                    c.id,
                    c.position,
                    c.text,
                    c.tokens,
                    c.page,
                    c.heading,
                    c.content_hash,
                    c.header,
                    ocr_confidence(c.metadata),
                )
                for c in stored
            ],
        )

    @put(
        "/{document_id:str}",
        summary="Replace a document with a new version",
        status_code=HTTP_202_ACCEPTED,
    )
    async def replace_document(
        self,
        collection: FromPath[str],
        document_id: FromPath[str],
        data: JSONBody[DocumentReplace],
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
        idempotency: NamedDependency[IdempotencyGuard],
        tenant: NamedDependency[str],
    ) -> Response[IngestAccepted]:
        """Readers see the old version until the new one is complete, then only the new one."""
        check_document_id(document_id, "document_id")  # the path's, named as such
        item = Submission(
            payload=text_or_title(data.text, data.title),
            where="text",
            document_id=document_id,
            content_type=PLAIN_TEXT,
            source=data.source,
            title=data.title,
            metadata=dict(data.metadata or {}),
        )
        return await _accepted(
            request,
            idempotency,
            tenant,
            collection,
            fingerprint("replace", collection, document_id, msgspec.to_builtins(data)),
            functools.partial(ingest.submit, tenant, collection, [item], kind="replace"),
        )

    @delete("/{document_id:str}", status_code=HTTP_200_OK, summary="Delete a document")
    async def delete_document(
        self,
        collection: FromPath[str],
        document_id: FromPath[str],
        document_service: NamedDependency[DocumentService],
        tenant: NamedDependency[str],
    ) -> DocumentDeleted:
        """Invisible at once; its chunks are removed from the store by the worker."""
        deleted = await document_service.delete(tenant, collection, document_id)
        return DocumentDeleted(deleted.document_id, deleted.version, deleted.chunks)


def _json_query(raw: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidInput.for_field(
            "where", "invalid JSON", detail="where: not valid JSON"
        ) from None
    except RecursionError:  # else the app-wide handler blames the (empty) request body
        raise InvalidInput.for_field("where", "nested too deeply to read") from None


def _form_metadata(raw: Any) -> dict[str, MetadataValue]:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise InvalidInput.for_field(
            "metadata", "not text", detail="metadata must be a JSON object in a text form field"
        )
    try:
        return msgspec.json.decode(raw, type=dict[str, MetadataValue])
    except msgspec.ValidationError as exc:
        raise InvalidInput.for_field("metadata", str(exc), detail=f"metadata: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidInput.for_field(
            "metadata", "invalid JSON", detail="metadata: not valid JSON"
        ) from None
