"""Session fixtures: a REAL redis-server and a REAL Chroma server on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rag_devstack import NativeStack, StackPorts

from tests.support import budget

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start the test's time budget where pytest-timeout starts its clock (setup included)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        seconds = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
    else:
        seconds = item.config.getoption("timeout", None) or item.config.getini("timeout")
    budget.start(float(seconds) if seconds else None)


# Folders whose tests share one stack (a package-scoped fixture in their conftest).
SHARED_STACKS = frozenset({"e2e/gateway", "e2e/ingest", "e2e/query"})
# Session-scoped stacks used across folders (fixtures in tests/e2e/conftest.py).
SESSION_STACKS = ("unthrottled_stack",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``--dist loadgroup``) what shares a stack runs on one
    worker: a session stack's users, else a folder's shared stack, else a module's (its
    module-scoped fixtures)."""
    for item in items:
        parts = item.path.relative_to(REPO_ROOT / "tests").parts
        folder = "/".join(parts[:2])
        shared = [name for name in SESSION_STACKS if name in getattr(item, "fixturenames", ())]
        group = "/".join(parts)
        if shared:
            group = shared[0]
        elif folder in SHARED_STACKS:
            group = folder
        item.add_marker(pytest.mark.xdist_group(group))


@dataclass(frozen=True)
class Backing:
    """Where the session's Redis and Chroma listen."""

    stack: NativeStack

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url

    @property
    def redis_port(self) -> int:
        return self.stack.ports.redis

    @property
    def chroma_port(self) -> int:
        return self.stack.ports.chroma


@pytest.fixture(scope="session")
def backing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    stack = NativeStack(tmp_path_factory.mktemp("backing"), StackPorts.free())
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def redis_server(backing_stack: NativeStack) -> Backing:
    """redis-server from the Debian package, with AOF on and noeviction, as in production."""
    if "redis" not in backing_stack.processes:
        backing_stack.start_redis()
        backing_stack.wait_redis()
    return Backing(backing_stack)


@pytest.fixture(scope="session")
def chroma_server(backing_stack: NativeStack) -> Backing:
    """`chroma run` from the chromadb package, persisting to a temp dir."""
    if "chroma" not in backing_stack.processes:
        backing_stack.start_chroma()
        backing_stack.wait_chroma()
    return Backing(backing_stack)


@pytest.fixture(scope="session")
def backing(redis_server: Backing, chroma_server: Backing) -> Backing:
    return redis_server
