"""The coalescer: requests that wait while a call runs share the next call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from rag_core.coalescing import Coalescer


async def _echo(requests: list[int]) -> list[int]:
    return [r * 10 for r in requests]


def _coalescer(
    call: Callable[[list[int]], Awaitable[list[int]]] = _echo,
) -> Coalescer[int, int]:
    return Coalescer(call, size=lambda _: 1, max_size=8, isolate=lambda _: False)


async def test_a_request_sent_as_the_last_call_ends_is_not_forgotten() -> None:
    """The caller whose result ends a call runs before that call's runner has left the set of
    runners: a request it sends at once found the set full and started no runner, and waited
    for ever (until some other request came)."""
    coalescer = _coalescer()

    async def one_then_another() -> int:
        await coalescer.submit(1)
        return await coalescer.submit(2)  # sent in the step that received the first result

    assert await asyncio.wait_for(one_then_another(), timeout=10) == 20


async def test_requests_waiting_during_a_call_share_the_next_one() -> None:
    calls: list[list[int]] = []
    started, gate = asyncio.Event(), asyncio.Event()

    async def call(requests: list[int]) -> list[int]:
        calls.append(requests)
        started.set()
        await gate.wait()
        return await _echo(requests)

    coalescer = _coalescer(call)
    first = asyncio.ensure_future(coalescer.submit(1))
    await started.wait()
    rest = [asyncio.ensure_future(coalescer.submit(n)) for n in (2, 3, 4)]
    gate.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    assert calls == [[1], [2, 3, 4]]
