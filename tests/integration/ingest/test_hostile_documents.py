"""Documents built to cost the worker or the store far more than they weigh, through the
real pipeline (parser pool, Redis, Chroma): each is bounded, or fails once with a reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rag_core.catalog import DEFAULT_NAMESPACE, Collection
from rag_ingest.components import IngestComponents
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.submissions import Submission
from rag_ingest.worker.pipeline import BadDocument, IngestPipeline

from tests.support.embedding import WordHashEmbedder

pytestmark = pytest.mark.integration


@pytest.fixture
async def parsers() -> AsyncIterator[ParserPool]:
    pool = ParserPool(workers=1, max_memory_mb=1024, timeout_seconds=60)
    yield pool
    pool.close()


async def _collection(parts: IngestComponents) -> Collection:
    name = f"h-{uuid.uuid4().hex[:8]}"
    return await parts.registry.create(DEFAULT_NAMESPACE, name, "all-MiniLM-L6-v2")


async def _ingest(
    parts: IngestComponents, parsers: ParserPool, col: Collection, item: Submission
) -> dict[str, Any]:
    """What the worker does with one submitted document."""
    [job] = await parts.ingest.submit(col.namespace, col.name, [item])
    payload = await parts.jobs.payload(job.id)
    assert payload is not None
    embedder = WordHashEmbedder()
    pipeline = IngestPipeline(
        parts.settings, parts.documents, parts.chunks, lambda _: embedder, parsers
    )

    async def nothing(stage: str, fraction: float) -> None:
        return None

    return await pipeline.run(job=job, collection=col, payload=payload, progress=nothing)


async def test_a_long_heading_is_stored_cut_not_in_full_with_every_chunk(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A 300 KB one-line Markdown heading became 271 chunks, each storing all of it as its
    heading (Chroma grew 249 MB; an answer returned 3 MB)."""
    heading = "Annual leave " + "policy " * 10_000  # 70 KB on one line
    text = f"# {heading}\n\nStaff get 25 days of annual leave per year.\n"
    col = await _collection(parts)
    item = Submission(text.encode(), where="documents[0]", document_id="long", filename="l.md")
    result = await _ingest(parts, parsers, col, item)
    assert result["chunks_created"] > 20  # the heading's own line is text, chunked as such
    record = await parts.documents.get(col.namespace, col.name, "long")
    assert record is not None
    stored = await parts.chunks.version(col.chroma_id, "long", record.tag)
    assert len(stored) == result["chunks_created"]
    limit = parts.settings.max_title_chars
    for chunk in stored:
        assert chunk.heading is not None
        assert chunk.heading.startswith("Annual leave policy policy")
        assert len(chunk.heading) <= limit
        assert len(chunk.header or "") <= parts.settings.chunk_header_max_chars
        assert len(chunk.text) <= parts.settings.chunk_max_chars
    assert len(result["title"]) <= limit


async def test_undecodable_utf16_fails_once_at_parsing_with_its_reason(
    parts: IngestComponents, parsers: ParserPool
) -> None:
    """A UTF-16 file (with its BOM) holding a lone surrogate: detection raised
    UnicodeDecodeError in the worker, outside the parser pool, and the job was retried five
    times as an internal error, then dead."""
    data = (
        b"\xff\xfe" + '{"policy": "x'.encode("utf-16-le") + b"\x00\xd8" + '"}'.encode("utf-16-le")
    )
    col = await _collection(parts)
    item = Submission(data, where="documents[0]", document_id="lone", filename="lone.json")
    with pytest.raises(BadDocument, match=r"not valid UTF-16 text \(byte 28\)") as failed:
        await _ingest(parts, parsers, col, item)
    assert failed.value.stage == "parsing"
