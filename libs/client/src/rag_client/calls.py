"""Every request of the public API, described once: what to send and how to read the answer.
``Client`` and ``AsyncClient`` only differ in how they send a ``Call``."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from rag_client.models import (
    Accepted,
    Answer,
    ApiKey,
    Collection,
    Document,
    DocumentPage,
    Job,
    JobPage,
    SearchResult,
    SystemInfo,
    convert,
)

T = TypeVar("T")
SearchMode = Literal["hybrid", "dense", "lexical"]
Generator = Literal["extractive", "openai", "google"]
# A file to upload: a path, or (file name, content) for data already in memory.
FileInput = Path | str | tuple[str, bytes]


def _raw(body: Any) -> Any:
    return body


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    files: Sequence[tuple[str, tuple[str, bytes, str]]] | None = None
    headers: Mapping[str, str] | None = None
    accepted: frozenset[int] = field(default_factory=frozenset)

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.data is not None:
            kwargs["data"] = dict(self.data)
        if self.files is not None:
            kwargs["files"] = list(self.files)
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        return kwargs


def segment(value: str) -> str:
    """One path segment: a collection or document id may hold any character, quoted. ``.``,
    ``..`` and an empty id are refused (ValueError) before anything is sent: in a path they
    would name another resource (``/documents/..`` is the collection itself), and no id of the
    API can be one of them."""
    if value in ("", ".", ".."):
        raise ValueError(
            f"{value!r} cannot be a collection, document or other id (it would change the path)"
        )
    return quote(value, safe="")


def _options(**values: Any) -> dict[str, Any]:
    """The options the caller set; the server's defaults (and settings) for the rest."""
    return {name: value for name, value in values.items() if value is not None}


def _idempotent(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


# Collections --------------------------------------------------------------------------------


def list_collections() -> Call[list[Collection]]:
    """The collections of your tenant (that your key may use)."""
    return Call("GET", "/v1/collections", lambda b: convert(b["collections"], list[Collection]))


def create_collection(
    name: str, *, description: str | None = None, embedding_model: str | None = None
) -> Call[Collection]:
    """Create a collection; ``embedding_model`` defaults to the server's EMBEDDING_MODEL."""
    body = {"name": name, **_options(description=description, embedding_model=embedding_model)}
    return Call("POST", "/v1/collections", lambda b: convert(b, Collection), json=body)


def get_collection(name: str) -> Call[Collection]:
    """A collection with its document and chunk counts."""
    return Call("GET", f"/v1/collections/{segment(name)}", lambda b: convert(b, Collection))


def delete_collection(name: str) -> Call[dict[str, Any]]:
    """Delete a collection with all its documents."""
    return Call("DELETE", f"/v1/collections/{segment(name)}", _raw)


def reembed_collection(name: str, embedding_model: str) -> Call[Job]:
    """Move a collection to another embedding model without downtime: a job (kind
    ``reembed``) builds a shadow collection from the stored chunks, catches up with the writes
    made meanwhile and switches at once; search serves the old model until then."""
    return Call(
        "POST",
        f"/v1/collections/{segment(name)}/reembed",
        lambda b: convert(b, Job),
        json={"embedding_model": embedding_model},
    )


def cancel_reembedding(name: str) -> Call[Job]:
    """Stop a collection's re-embedding: it keeps its model, the shadow is dropped."""
    return Call("DELETE", f"/v1/collections/{segment(name)}/reembed", lambda b: convert(b, Job))


# Documents ----------------------------------------------------------------------------------


def add_documents(
    collection: str,
    documents: Sequence[str | Mapping[str, Any]],
    *,
    idempotency_key: str | None = None,
) -> Call[Accepted]:
    """Ingest text documents: strings, or objects with ``text`` and optional ``id``,
    ``title``, ``metadata`` and ``source``. One job per document."""
    body = [{"text": d} if isinstance(d, str) else dict(d) for d in documents]
    return Call(
        "POST",
        f"/v1/collections/{segment(collection)}/documents",
        lambda b: convert(b, Accepted),
        json={"documents": body},
        headers=_idempotent(idempotency_key),
    )


def _file(item: FileInput) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(item, tuple):
        name, content = item
    else:
        path = Path(item)
        name, content = path.name, path.read_bytes()
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ("file", (name, content, kind))


def upload_files(
    collection: str,
    files: Sequence[FileInput],
    *,
    metadata: Mapping[str, Any] | None = None,
    source: str | None = None,
    document_id: str | None = None,
    title: str | None = None,
    idempotency_key: str | None = None,
) -> Call[Accepted]:
    """Upload files (PDF, DOCX, HTML, Markdown, text...): one job per file. ``metadata``
    applies to every file; ``document_id`` and ``title`` only with a single file (without a
    title, the one in the file is used: a PDF's, an HTML <title>, a first heading)."""
    data = _options(source=source, id=document_id, title=title)
    if metadata is not None:
        data["metadata"] = json.dumps(dict(metadata))
    return Call(
        "POST",
        f"/v1/collections/{segment(collection)}/documents/upload",
        lambda b: convert(b, Accepted),
        data=data,
        files=[_file(item) for item in files],
        headers=_idempotent(idempotency_key),
    )


def ingest_url(
    collection: str,
    url: str,
    *,
    max_depth: int = 0,
    same_domain: bool = True,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Call[Accepted]:
    """Fetch a web page (and, with ``max_depth``, the pages it links to) into a collection."""
    body: dict[str, Any] = {"url": url, "max_depth": max_depth, "same_domain": same_domain}
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return Call(
        "POST",
        f"/v1/collections/{segment(collection)}/documents/url",
        lambda b: convert(b, Accepted),
        json=body,
        headers=_idempotent(idempotency_key),
    )


def list_documents(
    collection: str,
    *,
    offset: int = 0,
    limit: int = 50,
    where: Mapping[str, Any] | None = None,
) -> Call[DocumentPage]:
    """A page of documents, optionally filtered by metadata."""
    params = {"offset": offset, "limit": limit, "where": json.dumps(where) if where else None}
    return Call(
        "GET",
        f"/v1/collections/{segment(collection)}/documents",
        lambda b: convert(b, DocumentPage),
        params=params,
    )


def get_document(collection: str, document_id: str) -> Call[Document]:
    """A document with its chunks."""
    return Call(
        "GET",
        f"/v1/collections/{segment(collection)}/documents/{segment(document_id)}",
        lambda b: convert(b, Document),
    )


def replace_document(
    collection: str,
    document_id: str,
    text: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    source: str | None = None,
    title: str | None = None,
    idempotency_key: str | None = None,
) -> Call[Accepted]:
    """Replace a document's text (searches see the old version until the new one is in)."""
    body = {
        "text": text,
        **_options(metadata=dict(metadata) if metadata else None, source=source, title=title),
    }
    return Call(
        "PUT",
        f"/v1/collections/{segment(collection)}/documents/{segment(document_id)}",
        lambda b: convert(b, Accepted),
        json=body,
        headers=_idempotent(idempotency_key),
    )


def delete_document(collection: str, document_id: str) -> Call[dict[str, Any]]:
    """Delete a document and its chunks."""
    return Call(
        "DELETE",
        f"/v1/collections/{segment(collection)}/documents/{segment(document_id)}",
        _raw,
    )


# Jobs ---------------------------------------------------------------------------------------


def get_job(job_id: str) -> Call[Job]:
    """A job: state, stage, progress, and its result or failure reason."""
    return Call("GET", f"/v1/jobs/{segment(job_id)}", lambda b: convert(b, Job))


def list_jobs(
    *,
    state: str | None = None,
    collection: str | None = None,
    limit: int = 50,
    before: float | None = None,
) -> Call[JobPage]:
    """Jobs, newest first; ``next_before`` pages on."""
    params = {"state": state, "collection": collection, "limit": limit, "before": before}
    return Call("GET", "/v1/jobs", lambda b: convert(b, JobPage), params=params)


def retry_job(job_id: str) -> Call[Job]:
    """Run a failed or dead job again."""
    return Call("POST", f"/v1/jobs/{segment(job_id)}/retry", lambda b: convert(b, Job))


def job_events(job_id: str) -> Call[Any]:
    return Call("GET", f"/v1/jobs/{segment(job_id)}/events", _raw)


# Search and answers -------------------------------------------------------------------------


def search(
    collection: str,
    query: str,
    *,
    top_k: int | None = None,
    mode: SearchMode | None = None,
    filter: Mapping[str, Any] | None = None,
    mmr: bool | None = None,
    **options: Any,
) -> Call[SearchResult]:
    """Ranked passages. ``options``: mmr_lambda, rrf_k, dense_weight, lexical_weight."""
    body = {
        "query": query,
        **_options(top_k=top_k, mode=mode, filter=filter, mmr=mmr, **options),
    }
    return Call(
        "POST",
        f"/v1/collections/{segment(collection)}/search",
        lambda b: convert(b, SearchResult),
        json=body,
    )


def query_body(
    question: str,
    *,
    top_k: int | None = None,
    mode: SearchMode | None = None,
    filter: Mapping[str, Any] | None = None,
    generator: Generator | None = None,
    session_id: str | None = None,
    cache: bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    return {
        "query": question,
        **_options(
            top_k=top_k,
            mode=mode,
            filter=filter,
            generator=generator,
            session_id=session_id,
            cache=cache,
            **options,
        ),
    }


def query(collection: str, question: str, **options: Any) -> Call[Answer]:
    """An answer citing its sources as [1], [2]... ``options``: top_k, mode, filter,
    generator, session_id (a conversation), cache, strategy, rerank and the search options."""
    return Call(
        "POST",
        f"/v1/collections/{segment(collection)}/query",
        lambda b: convert(b, Answer),
        json=query_body(question, **options),
    )


def query_stream(collection: str, question: str, **options: Any) -> Call[Any]:
    return Call(
        "POST",
        f"/v1/collections/{segment(collection)}/query",
        _raw,
        json={**query_body(question, **options), "stream": True},
    )


def get_session(session_id: str) -> Call[dict[str, Any]]:
    """A chat session's turns."""
    return Call("GET", f"/v1/sessions/{segment(session_id)}", _raw)


def delete_session(session_id: str) -> Call[dict[str, Any]]:
    """Forget a chat session."""
    return Call("DELETE", f"/v1/sessions/{segment(session_id)}", _raw)


# Evaluation ---------------------------------------------------------------------------------


def evaluate(
    collection: str,
    cases: Sequence[Mapping[str, Any]],
    *,
    top_k: int = 10,
    mode: str | None = None,
    answers: bool = False,
    generator: str | None = None,
    judge: bool = False,
    background: bool | None = None,
) -> Call[dict[str, Any]]:
    """Evaluate retrieval (and answers) on ``cases``; the result, or the evaluation's record
    (``state`` running, ``status_url``) when it runs in the background."""
    body: dict[str, Any] = {
        "collection": collection,
        "cases": [dict(c) for c in cases],
        "top_k": top_k,
        "answers": answers,
        "judge": judge,
        **_options(mode=mode, generator=generator, background=background),
    }
    return Call("POST", "/v1/evaluate", _raw, json=body)


def evaluate_beir(
    collection: str,
    queries: Path,
    qrels: Path,
    *,
    top_k: int = 10,
    mode: str | None = None,
    answers: bool = False,
    generator: str | None = None,
    judge: bool = False,
    background: bool | None = None,
) -> Call[dict[str, Any]]:
    """Evaluate on BEIR files: ``queries.jsonl`` and a qrels ``.tsv``."""
    data = {
        "collection": collection,
        "top_k": str(top_k),
        **_options(mode=mode, generator=generator),
    }
    for name, flag in (("answers", answers), ("judge", judge)):
        if flag:
            data[name] = "true"
    if background is not None:
        data["background"] = "true" if background else "false"
    files = [
        ("queries", (queries.name, queries.read_bytes(), "application/jsonl")),
        ("qrels", (qrels.name, qrels.read_bytes(), "text/tab-separated-values")),
    ]
    return Call("POST", "/v1/evaluate/beir", _raw, data=data, files=files)


def evaluation(evaluation_id: str) -> Call[dict[str, Any]]:
    """A background evaluation: state, progress and, once done, its result."""
    return Call("GET", f"/v1/evaluations/{segment(evaluation_id)}", _raw)


# Admin and system ---------------------------------------------------------------------------


def create_key(
    tenant: str,
    scopes: Sequence[str],
    *,
    name: str | None = None,
    collections: Sequence[str] | None = None,
    requests_per_minute: int | None = None,
    ingest_bytes_per_day: int | None = None,
) -> Call[ApiKey]:
    """An API key (admin only); its secret is in ``key``, shown this once. Scopes:
    ingest:read, ingest:write, query:read, admin."""
    body = {
        "tenant": tenant,
        "scopes": list(scopes),
        **_options(
            name=name,
            collections=list(collections) if collections is not None else None,
            requests_per_minute=requests_per_minute,
            ingest_bytes_per_day=ingest_bytes_per_day,
        ),
    }
    return Call("POST", "/v1/admin/keys", lambda b: convert(b, ApiKey), json=body)


def list_keys(*, tenant: str | None = None) -> Call[list[ApiKey]]:
    """API keys (admin only), never their secrets."""
    return Call(
        "GET",
        "/v1/admin/keys",
        lambda b: convert(b["keys"], list[ApiKey]),
        params={"tenant": tenant},
    )


def revoke_key(key_id: str) -> Call[ApiKey]:
    """Revoke an API key (admin only): it stops working at once."""
    return Call("DELETE", f"/v1/admin/keys/{segment(key_id)}", lambda b: convert(b, ApiKey))


def get_system_info() -> Call[SystemInfo]:
    """Each service's readiness and version, the embedder, the ingest queue."""
    return Call("GET", "/v1/system", lambda b: convert(b, SystemInfo))
