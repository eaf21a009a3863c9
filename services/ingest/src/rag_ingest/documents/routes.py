"""/v1/collections/{collection}/documents: ingest (JSON, files), list, get, replace, delete."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec
from arq.connections import ArqRedis
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from rag_core.catalog import DocumentRecord
from rag_core.chunks import ChunkStore
from rag_core.errors import InvalidInput, NotFound, UnsupportedMediaType
from rag_core.filters import validate_filter
from rag_core.quota import INGEST_QUOTA_HEADER, QuotaGrant
from rag_telemetry import current_traceparent

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.documents.forms import read_upload_form
from rag_ingest.documents.service import Accepted, IdempotencyGuard, IngestService, Submission
from rag_ingest.documents.store import DocumentStore
from rag_ingest.fetching.fetcher import FetchRefused, check_url_syntax
from rag_ingest.parsing import UnsupportedFormat, detect_format

MetadataValue = str | int | float | bool


class DocumentIn(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    id: str | None = None
    metadata: dict[str, MetadataValue] | None = None
    source: str | None = None


class DocumentBatch(msgspec.Struct, forbid_unknown_fields=True):
    documents: list[DocumentIn]


class DocumentReplace(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    metadata: dict[str, MetadataValue] | None = None
    source: str | None = None


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


def _wire(accepted: list[Accepted], collection: FromPath[str]) -> IngestAccepted:
    return IngestAccepted(collection, [JobRef(**a.to_wire()) for a in accepted])


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


async def _with_idempotency(
    request: Request[Any, Any, Any],
    guard: NamedDependency[IdempotencyGuard],
    tenant: str,
    fingerprint: str,
    work: Any,
) -> Response[Any]:
    key = request.headers.get("idempotency-key")
    if key is None:
        return Response(await work(), status_code=HTTP_202_ACCEPTED)
    stored = await guard.begin(tenant, key, fingerprint)
    if stored is not None:
        return Response(
            stored["body"],
            status_code=int(stored["status"]),
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        body = msgspec.to_builtins(await work())
    except BaseException:
        await guard.abandon(tenant, key)
        raise
    await guard.finish(tenant, key, fingerprint, HTTP_202_ACCEPTED, body)
    return Response(body, status_code=HTTP_202_ACCEPTED)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).hexdigest()


def _check_supported(item: Submission, max_archive_entries: int) -> None:
    """Refuse what no parser can read now (415), instead of a job that will surely fail. Only
    bounded sniffing here: this process serves every other request."""
    try:
        detect_format(
            item.payload,
            filename=item.filename,
            content_type=item.content_type,
            max_archive_entries=max_archive_entries,
            sniff=True,
        )
    except UnsupportedFormat as exc:
        raise UnsupportedMediaType(f"{item.where}: {exc}") from None
    except Exception:  # noqa: S110 - anything else is for the worker to explain
        pass


class DocumentController(Controller):
    path = "/v1/collections/{collection:str}/documents"
    tags = ["documents"]

    @post(
        "",
        summary="Ingest a batch of text documents",
        status_code=HTTP_202_ACCEPTED,
        responses=None,
    )
    async def ingest_json(
        self,
        collection: FromPath[str],
        data: JSONBody[DocumentBatch],
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
        idempotency: NamedDependency[IdempotencyGuard],
        tenant: NamedDependency[str],
    ) -> Response[Any]:
        """202 with one job per document. Honours `Idempotency-Key`."""
        ingest.check_batch_size(len(data.documents))
        items = [
            Submission(
                payload=doc.text.encode("utf-8"),
                where=f"documents[{i}]",
                document_id=doc.id,
                content_type="text/plain; charset=utf-8",
                source=doc.source,
                metadata=dict(doc.metadata or {}),
            )
            for i, doc in enumerate(data.documents)
        ]

        async def work() -> IngestAccepted:
            return _wire(
                await ingest.submit(
                    tenant,
                    collection,
                    items,
                    request_id=_request_id(request),
                    traceparent=current_traceparent(),
                ),
                collection,
            )

        return await _with_idempotency(
            request,
            idempotency,
            tenant,
            _fingerprint("json", collection, msgspec.to_builtins(data)),
            work,
        )

    @post("/upload", summary="Upload one or more files", status_code=HTTP_202_ACCEPTED)
    async def ingest_files(
        self,
        collection: FromPath[str],
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
        idempotency: NamedDependency[IdempotencyGuard],
        tenant: NamedDependency[str],
    ) -> Response[Any]:
        """multipart/form-data: `file` (repeat for several), optional `metadata` (a JSON object
        applied to every file), `source`, and `id` (only with a single file)."""
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
        if doc_id and len(form.files) > 1:
            raise InvalidInput.for_field(
                "id",
                "several files",
                detail="'id' names one document; it cannot be used with several files",
            )
        ingest.check_batch_size(len(form.files))
        items = [
            Submission(
                payload=bytes(upload.data),
                where=f"file[{index}]",
                document_id=doc_id,
                filename=upload.filename,
                content_type=upload.content_type,
                source=source,
                metadata=dict(metadata),
            )
            for index, upload in enumerate(form.files)
        ]
        ingest.validate(items)
        for item in items:
            _check_supported(item, ingest.settings.max_archive_entries)

        async def work() -> IngestAccepted:
            return _wire(
                await ingest.submit(
                    tenant,
                    collection,
                    items,
                    request_id=_request_id(request),
                    traceparent=current_traceparent(),
                ),
                collection,
            )

        fingerprint = _fingerprint(
            "files",
            collection,
            metadata,
            source,
            doc_id,
            [(i.filename, hashlib.sha256(i.payload).hexdigest()) for i in items],
        )
        return await _with_idempotency(request, idempotency, tenant, fingerprint, work)

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
    ) -> Response[Any]:
        """The worker fetches it: public addresses only (FETCH_ALLOW_NETWORKS widens that),
        FETCH_MAX_REDIRECTS redirects, MAX_FILE_BYTES per page, FETCH_TIMEOUT_SECONDS, and at
        most FETCH_MAX_PAGES pages. Each page becomes a document whose id derives from its URL.
        Through the gateway, the pages' bytes count against the caller's daily ingest quota."""
        try:
            url = check_url_syntax(data.url)
        except FetchRefused as exc:
            raise InvalidInput.for_field("url", str(exc), detail=f"url: {exc}") from None
        grant = request.headers.get(INGEST_QUOTA_HEADER)
        quota = QuotaGrant.from_header(grant) if grant else None

        async def work() -> IngestAccepted:
            accepted = await ingest.submit_url(
                tenant,
                collection,
                url,
                max_depth=data.max_depth,
                same_domain=data.same_domain,
                metadata=dict(data.metadata or {}),
                request_id=_request_id(request),
                traceparent=current_traceparent(),
                quota=quota,
            )
            return _wire([accepted], collection)

        return await _with_idempotency(
            request,
            idempotency,
            tenant,
            _fingerprint("url", collection, msgspec.to_builtins(data)),
            work,
        )

    @get("", summary="List documents (paged; optional metadata filter)")
    async def list_documents(
        self,
        collection: FromPath[str],
        registry: NamedDependency[CollectionRegistry],
        document_store: NamedDependency[DocumentStore],
        tenant: NamedDependency[str],
        chunk_store: NamedDependency[ChunkStore],
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        where: Annotated[str | None, QueryParameter(description="JSON metadata filter")] = None,
    ) -> DocumentPage:
        found = await registry.get(tenant, collection)
        if where is None:
            ids = await document_store.page(tenant, collection, offset=offset, limit=limit)
            records = await document_store.get_many(tenant, collection, ids)
            return DocumentPage(
                [DocumentOut.of(r) for r in records], found.document_count, offset, limit
            )
        try:
            parsed = msgspec.json.decode(where)
        except msgspec.DecodeError:
            raise InvalidInput.for_field(
                "where", "invalid JSON", detail="where: not valid JSON"
            ) from None
        except RecursionError:  # else the app-wide handler blames the (empty) request body
            raise InvalidInput.for_field("where", "nested too deeply to read") from None
        condition = validate_filter(parsed, path="where")
        # Every document's first chunk carries its metadata: filter those in Chroma.
        tags = await chunk_store.versions_matching(found.chroma_id, condition)
        records = await document_store.get_many(
            tenant, collection, sorted({doc for doc, _ in tags})
        )
        active = [r for r in records if (r.id, r.tag) in tags]
        return DocumentPage(
            [DocumentOut.of(r) for r in active[offset : offset + limit]], len(active), offset, limit
        )

    @get("/{document_id:str}", summary="A document with its chunks (active version)")
    async def get_document(
        self,
        collection: FromPath[str],
        document_id: FromPath[str],
        registry: NamedDependency[CollectionRegistry],
        document_store: NamedDependency[DocumentStore],
        tenant: NamedDependency[str],
        chunk_store: NamedDependency[ChunkStore],
        chunks: FromQuery[bool] = True,
    ) -> DocumentOut:
        found = await registry.get(tenant, collection)
        record = await document_store.get(tenant, collection, document_id)
        if record is None:
            raise NotFound(f"document {document_id!r} is not in collection {collection!r}")
        if not chunks:
            return DocumentOut.of(record)
        stored = await chunk_store.version(found.chroma_id, document_id, record.tag)
        return DocumentOut.of(
            record,
            [
                ChunkOut(c.id, c.position, c.text, c.tokens, c.page, c.heading, c.content_hash)
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
    ) -> Response[Any]:
        """Readers see the old version until the new one is complete, then only the new one."""
        item = Submission(
            payload=data.text.encode("utf-8"),
            where="text",
            document_id=document_id,
            content_type="text/plain; charset=utf-8",
            source=data.source,
            metadata=dict(data.metadata or {}),
        )

        async def work() -> IngestAccepted:
            accepted = await ingest.submit(
                tenant,
                collection,
                [item],
                kind="replace",
                request_id=_request_id(request),
                traceparent=current_traceparent(),
            )
            return _wire(accepted, collection)

        return await _with_idempotency(
            request,
            idempotency,
            tenant,
            _fingerprint("replace", collection, document_id, msgspec.to_builtins(data)),
            work,
        )

    @delete("/{document_id:str}", status_code=HTTP_200_OK, summary="Delete a document")
    async def delete_document(
        self,
        collection: FromPath[str],
        document_id: FromPath[str],
        registry: NamedDependency[CollectionRegistry],
        document_store: NamedDependency[DocumentStore],
        tenant: NamedDependency[str],
        arq: NamedDependency[ArqRedis],
    ) -> dict[str, Any]:
        """Invisible at once; its chunks are removed from Chroma by the worker."""
        found = await registry.get(tenant, collection)
        outcome = await document_store.remove(tenant, collection, found.chroma_id, document_id)
        if outcome.status == "missing":
            raise NotFound(f"document {document_id!r} is not in collection {collection!r}")
        # Its chunks are listed for cleanup already; this only makes the worker do it now.
        await arq.enqueue_job("drain_cleanups")
        previous = outcome.previous
        return {
            "deleted": document_id,
            "version": previous.version if previous else None,
            "chunks": previous.chunk_count if previous else 0,
        }


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
