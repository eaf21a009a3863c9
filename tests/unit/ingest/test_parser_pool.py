"""The parser pool: a stuck or hungry parse is stopped without hurting the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rag_ingest.parsing import ParseError, parse_document
from rag_ingest.parsing.pool import ParserPool

from tests.support import child_tasks


@pytest.fixture
async def pool() -> AsyncIterator[ParserPool]:
    parsers = ParserPool(workers=2, max_memory_mb=512, timeout_seconds=6)
    yield parsers
    parsers.close()


async def test_a_parse_that_hangs_is_stopped_and_the_others_finish(tmp_path: Path) -> None:
    pool = ParserPool(workers=2, max_memory_mb=512, timeout_seconds=2)
    try:
        release = tmp_path / "release"
        hung = asyncio.create_task(pool.run(child_tasks.hang))
        # Not a wait for a condition: the neighbour's own 2 s start 1 s later, so the hang is
        # killed first, while the neighbour runs (it waits for a file made after the kill).
        await asyncio.sleep(1)
        innocent = asyncio.create_task(pool.run(child_tasks.wait_for_file, str(release), "fine"))
        with pytest.raises(ParseError, match="PARSE_TIMEOUT_SECONDS"):
            await hung
        assert not innocent.done()
        release.touch()
        # It lost its process with the killed pool and ran again in the new one.
        assert await innocent == "fine"
        assert await pool.run(child_tasks.echo, "after") == "after"
    finally:
        pool.close()


async def test_memory_beyond_the_limit_fails_in_the_child(pool: ParserPool) -> None:
    with pytest.raises(MemoryError):
        await pool.run(child_tasks.allocate, 1024)
    assert await pool.run(child_tasks.allocate, 16) == 16 * 1024 * 1024


async def test_a_document_that_kills_its_parser_twice_fails_with_that_reason(
    pool: ParserPool,
) -> None:
    with pytest.raises(ParseError, match="parser process died"):
        await pool.run(child_tasks.die)
    assert await pool.run(child_tasks.echo, "alive") == "alive"


async def test_documents_are_parsed_in_the_children(pool: ParserPool) -> None:
    parsed = await pool.run(
        parse_document, b"# Title\n\nSome text.", filename="a.md", content_type=None
    )
    assert parsed.format == "markdown"
    assert parsed.sections[0].heading_path == ("Title",)
