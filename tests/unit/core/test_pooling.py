"""POOL_SIZE: after a burst of concurrent requests, an aiohttp pool keeps only that many idle
connections open (aiohttp itself would keep every one until its keep-alive timeout)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from rag_core.pooling import KeepAliveConnector


async def test_a_burst_leaves_at_most_keep_idle_connections() -> None:
    gate, all_in = asyncio.Event(), asyncio.Event()
    arrived = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 12:
            all_in.set()
        await gate.wait()  # every request holds its own connection until all have arrived
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    connector = KeepAliveConnector(keep=3, limit=20)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get() -> str:
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    return await response.text()

            burst = [asyncio.create_task(get()) for _ in range(12)]
            await asyncio.wait_for(all_in.wait(), 30)
            gate.set()
            assert await asyncio.gather(*burst) == ["ok"] * 12
            assert connector.idle_connections() == 3
            # The kept ones are reused: one more request opens nothing new.
            assert await get() == "ok"
            assert connector.idle_connections() == 3
    finally:
        await runner.cleanup()
