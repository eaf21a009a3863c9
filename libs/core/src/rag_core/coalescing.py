"""Coalesce concurrent requests into few large calls.

Models and stores have a fixed cost per call (a model run, a log append and commit); a
worker running many small jobs at once would pay it per job. Here requests wait while one
call runs, and the next call takes everything waiting (up to ``max_size``), so calls are as
large as the load allows and no request waits longer than one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass
class _Waiting(Generic[Request, Result]):
    request: Request
    future: asyncio.Future[Result]


class Coalescer(Generic[Request, Result]):
    """``call`` takes a list of requests and returns one result per request, in order; at
    most ``concurrency`` calls run at once.

    When a combined call fails with an error that may be one request's fault
    (``isolate(error)`` is true: invalid input, not an outage), each request is tried on its
    own, so one bad request cannot fail the others that happened to share its call."""

    def __init__(
        self,
        call: Callable[[list[Request]], Awaitable[list[Result]]],
        *,
        size: Callable[[Request], int],
        max_size: int,
        isolate: Callable[[BaseException], bool],
        concurrency: int = 1,
    ) -> None:
        self.call = call
        self.size = size
        self.max_size = max_size
        self.isolate = isolate
        self.concurrency = concurrency
        self._queue: list[_Waiting[Request, Result]] = []
        self._runners: set[asyncio.Task[None]] = set()

    async def submit(self, request: Request) -> Result:
        """The result of ``request``, from a call it shares with whatever else is waiting."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(request, future))
        if len(self._runners) < self.concurrency:
            runner = asyncio.create_task(self._run())
            self._runners.add(runner)
        return await future

    async def _run(self) -> None:
        try:
            await self._drain()
        finally:
            # Leave the set in the same step that found the queue empty: a done callback
            # would run a step later, and a request sent meanwhile would find the set full,
            # start no runner and wait for ever.
            self._runners.discard(asyncio.current_task())

    def _take(self) -> list[_Waiting[Request, Result]]:
        taken: list[_Waiting[Request, Result]] = []
        total = 0
        while self._queue and (
            not taken or total + self.size(self._queue[0].request) <= self.max_size
        ):
            waiting = self._queue.pop(0)
            total += self.size(waiting.request)
            taken.append(waiting)
        return [w for w in taken if not w.future.cancelled()]

    async def _drain(self) -> None:
        while self._queue:
            taken = self._take()
            if not taken:
                continue
            try:
                results = await self.call([w.request for w in taken])
            except Exception as exc:
                if len(taken) > 1 and self.isolate(exc):
                    for waiting in taken:
                        await self._run_alone(waiting)
                    continue
                for waiting in taken:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            for waiting, result in zip(taken, results, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(result)

    async def _run_alone(self, waiting: _Waiting[Request, Result]) -> None:
        try:
            [result] = await self.call([waiting.request])
        except Exception as exc:
            if not waiting.future.done():
                waiting.future.set_exception(exc)
        else:
            if not waiting.future.done():
                waiting.future.set_result(result)
