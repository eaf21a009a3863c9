"""The running test's time budget (pytest-timeout's limit, from its start).

Waits in tests give up a little before the budget is spent, with a message that says what
they were waiting for: pytest-timeout's own failure shows only where the test stood."""

from __future__ import annotations

import time

MARGIN_SECONDS = 10.0

_budget: dict[str, float] = {}


def start(seconds: float | None) -> None:
    _budget.clear()
    if seconds:
        _budget["ends_at"] = time.monotonic() + seconds


def deadline(seconds: float) -> float:
    """When a wait of ``seconds`` must give up: then, or just before the test's budget ends."""
    wanted = time.monotonic() + seconds
    if "ends_at" not in _budget:
        return wanted
    return min(wanted, _budget["ends_at"] - MARGIN_SECONDS)
