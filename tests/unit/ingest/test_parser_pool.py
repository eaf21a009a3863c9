"""The parser pool: a stuck or hungry parse is stopped without hurting the others."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
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


def test_parser_processes_die_with_a_killed_worker(tmp_path: Path) -> None:
    """A worker SIGKILLed (OOM killer, a crash) left its parser processes running, idle, for
    good: they lead process groups of their own, which nothing stopped."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import asyncio, os, signal\n"
        "from rag_ingest.parsing.pool import ParserPool\n"
        "async def main():\n"
        "    pool = ParserPool(workers=2, max_memory_mb=512, timeout_seconds=30)\n"
        "    await pool.run(os.getpid)\n"
        "    print(*pool._executor._processes, flush=True)\n"
        "    signal.pause()  # until killed\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        assert worker.stdout is not None
        children += [int(pid) for pid in worker.stdout.readline().split()]
        assert len(children) == 2
        assert all(_alive(pid) for pid in children)
        worker.kill()
        worker.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, f"parser processes {children} outlived it"
            time.sleep(0.05)
    finally:
        worker.kill()
        for pid in children:  # what a failure left behind
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped by init, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
