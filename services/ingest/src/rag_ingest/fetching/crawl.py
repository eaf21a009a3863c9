"""A URL job: fetch the page (and, with max_depth, the pages it links to) and queue an
ordinary ingest job for each page, so dedup and versioning work exactly as for uploads."""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

from rag_config import IngestSettings

from rag_ingest.documents.service import IngestService, Submission
from rag_ingest.fetching.fetcher import (
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    extract_links,
    fetch,
)
from rag_ingest.jobs.model import JobRecord
from rag_ingest.parsing import ParseError, detect_format
from rag_ingest.parsing.pool import ParserPool


def url_document_id(url: str) -> str:
    return "url-" + hashlib.sha256(url.encode()).hexdigest()[:24]


def fetch_policy(settings: IngestSettings) -> FetchPolicy:
    return FetchPolicy(
        timeout_seconds=settings.fetch_timeout_seconds,
        max_bytes=settings.max_file_bytes,
        max_redirects=settings.fetch_max_redirects,
        allow_networks=FetchPolicy.parse_networks(settings.fetch_allow_networks),
    )


async def crawl(
    job: JobRecord, settings: IngestSettings, ingest: IngestService, parsers: ParserPool
) -> dict[str, Any]:
    """Breadth-first from the job's URL. The first page must succeed (FetchRefused and
    FetchFailed propagate: the job fails or is retried); later pages that fail, for good or
    for now, are listed with their reason. Links are read in the parser pool, which stops a
    page that would take too long."""
    options = job.options or {}
    root, max_depth = str(options["url"]), int(options.get("max_depth", 0))
    same_domain = bool(options.get("same_domain", True))
    policy = fetch_policy(settings)
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    seen = {root}
    pages: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    while queue and len(pages) < settings.fetch_max_pages:
        url, depth = queue.popleft()
        try:
            page = await fetch(url, policy)
        except (FetchRefused, FetchFailed) as exc:
            if url == root:
                raise
            skipped.append({"url": url, "reason": str(exc)})
            continue
        try:
            kind = detect_format(page.content, content_type=page.content_type)
        except ParseError as exc:
            if url == root:
                raise FetchRefused(f"{url}: {exc}") from None
            skipped.append({"url": url, "reason": str(exc)})
            continue
        [accepted] = await ingest.submit(
            job.collection,
            [
                Submission(
                    payload=page.content,
                    where=url,
                    document_id=url_document_id(page.url),
                    content_type=page.content_type,
                    source=page.url,
                    metadata=dict(job.metadata or {}),
                )
            ],
            request_id=job.request_id,
            traceparent=job.traceparent,
        )
        pages.append(
            {
                "url": page.url,
                "job_id": accepted.record.id,
                "document_id": accepted.record.document_id,
            }
        )
        if depth < max_depth and kind == "html":
            try:
                links = await parsers.run(
                    extract_links, page.content, page.url, same_domain=same_domain
                )
            except ParseError as exc:
                skipped.append({"url": page.url, "reason": f"links not followed: {exc}"})
                continue
            for link in links:
                if link not in seen:
                    seen.add(link)
                    queue.append((link, depth + 1))
    return {
        "status": "crawled",
        "pages": pages,
        "skipped": skipped,
        "not_fetched": len(queue),
        "chunks_created": 0,
    }
