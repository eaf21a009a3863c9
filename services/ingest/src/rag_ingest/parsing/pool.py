"""Parsing in child processes that can be stopped.

A parser thread cannot be interrupted: a hostile document (HTML nested fifty thousand levels
deep, a PDF whose content streams never end) would hold a worker thread — and with the GIL,
the event loop — for minutes. Here documents are parsed in a pool of spawned processes, each
with an address-space limit (PARSE_MAX_MEMORY_MB); a parse that outlives
PARSE_TIMEOUT_SECONDS gets its pool killed and replaced. Parses that were running beside it
are innocent and run again in the new pool; a document that crashes a parser process twice
fails with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from rag_telemetry import get_logger

from rag_ingest.parsing.child import limit_memory, warm_up
from rag_ingest.parsing.model import ParseError

log = get_logger("rag.parsing")
T = TypeVar("T")
WARM_UP_SECONDS = 120  # a new pool's processes start (and import) within this, or are used cold


class ParserPool:
    """Runs picklable module-level functions in killable, memory-limited child processes."""

    def __init__(self, *, workers: int, max_memory_mb: int, timeout_seconds: float) -> None:
        self.workers = workers
        self.max_memory_bytes = max_memory_mb * 1024 * 1024
        self.timeout_seconds = timeout_seconds
        self._generation = 0
        self._warming: list[Future[None]] = []
        self._slots = asyncio.Semaphore(workers)
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=limit_memory,
            initargs=(self.max_memory_bytes,),
        )
        # Start the processes now, and never count their start against a document's time
        # limit: starting Python and importing the parsers and the tokenizer takes seconds on
        # a busy machine (a pool replaced after a timeout would otherwise time out again).
        self._warming = [executor.submit(warm_up) for _ in range(self.workers)]
        return executor

    async def _warmed_up(self) -> None:
        if not self._warming:
            return
        warming = self._warming
        with contextlib.suppress(Exception):  # a broken pool shows itself to the parse
            await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in warming)), WARM_UP_SECONDS
            )
        if self._warming is warming:
            self._warming = []

    def _replace(self, generation: int) -> None:
        """Kill the pool of ``generation`` (if still current) and start a fresh one."""
        if generation != self._generation:
            return  # someone replaced it already
        old = self._executor
        self._generation += 1
        self._executor = self._new_executor()
        _kill(old)
        old.shutdown(wait=False, cancel_futures=True)

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in a child. Raises ParseError when it runs out of time
        or its process dies twice; exceptions it raises come back as they are."""
        crashes = 0
        while True:
            # One parse per child at a time, so the time limit counts parsing, not queueing.
            async with self._slots:
                await self._warmed_up()
                generation = self._generation
                future = asyncio.wrap_future(self._executor.submit(function, *args, **kwargs))
                try:
                    return await asyncio.wait_for(future, self.timeout_seconds)
                except asyncio.CancelledError:
                    # Nobody waits for this parse any more (the job timed out or stops): a
                    # child cannot be told to stop one task, so its pool goes.
                    self._replace(generation)
                    raise
                except TimeoutError:
                    log.warning("parse_timed_out", timeout_seconds=self.timeout_seconds)
                    self._replace(generation)
                    raise ParseError(
                        f"parsing took longer than {self.timeout_seconds:g} s "
                        "(PARSE_TIMEOUT_SECONDS); the document is too large or too complex"
                    ) from None
                except BrokenProcessPool:
                    if generation != self._generation:
                        continue  # another parse's timeout killed the pool: run this one again
                    crashes += 1
                    log.warning("parser_process_died", crashes=crashes)
                    self._replace(generation)
                    if crashes >= 2:
                        raise ParseError(
                            "the parser process died reading this document (it may need more "
                            "memory than PARSE_MAX_MEMORY_MB allows)"
                        ) from None

    def close(self) -> None:
        _kill(self._executor)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _kill(executor: ProcessPoolExecutor) -> None:
    """Kill each child of ``executor`` with its process group (what it started: tesseract)."""
    for process in list(getattr(executor, "_processes", {}).values()):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()  # not (yet) a group of its own
