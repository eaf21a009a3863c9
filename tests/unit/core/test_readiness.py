"""/ready reports each dependency, with a time limit, and says why it is not ready."""

from __future__ import annotations

import asyncio

from rag_core.health import Readiness


async def _ok() -> None:
    return None


async def _refused() -> None:
    raise ConnectionRefusedError("connection refused")


async def _hangs() -> None:
    await asyncio.sleep(30)


async def test_ready_only_when_every_check_answers() -> None:
    readiness = Readiness(timeout=0.2, started=True)
    readiness.checks.update(redis=_ok, chroma=_ok)
    ok, body = await readiness.report()
    assert ok
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"redis", "chroma"}
    assert all(check["status"] == "ok" for check in body["checks"].values())


async def test_failures_and_timeouts_are_named() -> None:
    readiness = Readiness(timeout=0.2, started=True)
    readiness.checks.update(redis=_ok, chroma=_refused, llm=_hangs)
    ok, body = await readiness.report()
    assert not ok
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["status"] == "ok"
    assert "connection refused" in body["checks"]["chroma"]["error"]
    assert body["checks"]["llm"]["error"] == "no answer within 0.2s"


async def test_not_ready_before_start_and_while_draining() -> None:
    readiness = Readiness()
    readiness.checks["redis"] = _ok
    assert await readiness.report() == (False, {"status": "starting", "checks": {}})
    readiness.started = True
    assert (await readiness.report())[0]
    readiness.draining = True
    assert await readiness.report() == (False, {"status": "draining", "checks": {}})
