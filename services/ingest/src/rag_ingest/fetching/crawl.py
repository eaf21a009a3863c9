"""A URL job: fetch the page (and, with max_depth, the pages it links to) and queue an
ordinary ingest job for each page, so dedup and versioning work exactly as for uploads.

The request that made the job cost its caller a few bytes of their daily ingest quota; the
pages cost what they weigh. Every fetched page is charged to the same daily counter the
gateway uses (the job's ``quota``, from the gateway), and a page is never read past what is
left of it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import replace
from typing import Any

from rag_config import IngestSettings
from rag_core.catalog import Collection
from rag_core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from rag_core.quota import DailyIngestBytes, QuotaGrant

from rag_ingest.fetching.fetcher import (
    Fetched,
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    TooLarge,
    decode_body,
    extract_links,
    fetch,
)
from rag_ingest.jobs.model import JobRecord
from rag_ingest.parsing import ParseError, detect_format
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.submissions import JobSubmitter, Submission


def url_document_id(url: str) -> str:
    return "url-" + hashlib.sha256(url.encode()).hexdigest()[:24]


def fetch_policy(settings: IngestSettings) -> FetchPolicy:
    return FetchPolicy(
        timeout_seconds=settings.fetch_timeout_seconds,
        max_bytes=settings.max_file_bytes,
        max_redirects=settings.fetch_max_redirects,
        allow_networks=FetchPolicy.parse_networks(settings.fetch_allow_networks),
    )


class QuotaExceeded(FetchRefused):
    """The page would pass its caller's daily ingest quota: refused, never retried."""


async def fetch_decoded(url: str, policy: FetchPolicy, parsers: ParserPool) -> Fetched:
    """``fetch``, then the body undone from its content-coding in the parser pool (within the
    same ``max_bytes``)."""
    page = await fetch(url, policy)
    if page.coding is None:
        return page
    try:
        content = await parsers.run(
            decode_body, page.url, page.content, page.coding, policy.max_bytes
        )
    except ParseError as exc:  # the pool stopped it (time, memory)
        raise FetchRefused(f"{page.url}: its {page.coding} body was not decoded ({exc})") from None
    return replace(page, content=content, coding=None)


async def fetch_within_quota(
    url: str,
    policy: FetchPolicy,
    grant: QuotaGrant | None,
    counter: DailyIngestBytes,
    parsers: ParserPool,
) -> Fetched:
    """``fetch_decoded``, reading no more than what is left of the caller's quota today, and
    charging the page to it (a refused page costs nothing)."""
    if grant is None:  # not through the gateway: nobody's quota to count
        return await fetch_decoded(url, policy, parsers)
    left = await counter.remaining(grant)
    if left <= 0:
        raise QuotaExceeded(grant.refusal(f"fetching {url}"))
    capped = replace(policy, max_bytes=min(policy.max_bytes, left))
    try:
        page = await fetch_decoded(url, capped, parsers)
    except TooLarge:
        if capped.max_bytes < policy.max_bytes:  # the quota was the limit, not MAX_FILE_BYTES
            raise QuotaExceeded(
                grant.refusal(f"{url} (larger than the {left} bytes left today)")
            ) from None
        raise
    if not await counter.spend(grant, len(page.content)):  # others spent it meanwhile
        raise QuotaExceeded(grant.refusal(f"{page.url} ({len(page.content)} bytes)"))
    return page


async def crawl(
    job: JobRecord,
    collection: Collection,
    settings: IngestSettings,
    submitter: JobSubmitter,
    counter: DailyIngestBytes,
    parsers: ParserPool,
) -> dict[str, Any]:
    """Breadth-first from the job's URL. The first page must succeed (FetchRefused and
    FetchFailed propagate: the job fails or is retried); later pages that fail, for good or
    for now, are listed with their reason. A page over the caller's daily quota ends the crawl
    there. Links are read in the parser pool, which stops a page that would take too long."""
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
            page = await fetch_within_quota(url, policy, job.quota, counter, parsers)
        except QuotaExceeded as exc:
            if url == root:
                raise
            skipped.append({"url": url, "reason": str(exc)})
            break  # nothing more is fetched for this caller today
        except (FetchRefused, FetchFailed) as exc:
            if url == root:
                raise
            skipped.append({"url": url, "reason": str(exc)})
            continue
        try:
            # Sniffed only (JSON is not parsed here, in the worker): whether the page parses
            # is found by its own job, in the bounded parser pool.
            kind = detect_format(
                page.content,
                content_type=page.content_type,
                sniff=True,
                images=settings.ocr_enabled,
            )
        except ParseError as exc:
            if url == root:
                raise FetchRefused(f"{url}: {exc}") from None
            skipped.append({"url": url, "reason": str(exc)})
            continue
        submission = Submission(
            payload=page.content,
            where=url,
            document_id=url_document_id(page.url),
            content_type=page.content_type,
            source=page.url,
            metadata=dict(job.metadata or {}),
        )
        try:
            [queued] = await submitter.submit(
                collection,
                [submission],
                request_id=job.request_id,
                traceparent=job.traceparent,
            )
        except (InvalidInput, PayloadTooLarge, UnsupportedMediaType) as exc:
            if url == root:
                raise FetchRefused(exc.detail) from None
            skipped.append({"url": url, "reason": exc.detail})
            continue
        pages.append({"url": page.url, "job_id": queued.id, "document_id": queued.document_id})
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
