"""Session fixtures: a REAL redis-server and a REAL Chroma server on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rag_devstack import NativeStack, StackPorts
from xdist.scheduler import LoadScopeScheduling

from tests.support import budget

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_TESTS = REPO_ROOT / "tests" / "docker"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/docker builds images and runs both compose stacks in a Docker engine of its own:
    `make test-docker` (RAG_TEST_DOCKER=1) runs it, after and apart from `make test`."""
    if collection_path == DOCKER_TESTS and os.environ.get("RAG_TEST_DOCKER") != "1":
        return True
    return None


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
# Modules that use a session-scoped stack of tests/e2e/conftest.py (`unthrottled_stack`).
SESSION_STACK_USERS = {
    "e2e/faults/test_soak.py": "unthrottled_stack",
    "e2e/gateway/test_schemathesis.py": "unthrottled_stack",
}


def stack_group(nodeid: str) -> str:
    """The tests that share a stack, by a test's id: a session stack's users, else a folder's
    shared stack, else a module (its module-scoped fixtures)."""
    module = nodeid.split("::", 1)[0].removeprefix("tests/")
    folder = "/".join(module.split("/")[:2])
    if module in SESSION_STACK_USERS:
        return SESSION_STACK_USERS[module]
    return folder if folder in SHARED_STACKS else module


def _tier(group: str) -> int:
    """Stacks first, then tests of real Redis and Chroma, then unit tests."""
    for tier, prefix in enumerate(("integration/", "unit/"), start=1):
        if group.startswith(prefix):
            return tier
    return 0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, the collection order is the schedule (``StackScheduling``): the
    groups that start stacks go first, the many small unit tests last, so neither worker waits
    at the end while the other runs a long group (sorted by test count, as xdist does, the
    soak and the fuzzing came last and ran alone for 40 s)."""
    if not hasattr(config, "workerinput"):
        return
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(stack_group(item.nodeid), []).append(item)
    order = sorted(groups, key=lambda group: (_tier(group), -len(groups[group])))
    items[:] = [item for group in order for item in groups[group]]


class StackScheduling(LoadScopeScheduling):
    """pytest-xdist's loadscope, each scope being what shares a stack (``stack_group``): one
    worker runs all of it and starts the stack once."""

    def _split_scope(self, nodeid: str) -> str:
        return stack_group(nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> StackScheduling | None:
    """``make test`` runs ``--dist loadgroup``. xdist's own loadgroup does not group with
    pytest 9.2 (it writes the group into the old node id field: pytest-xdist issue 1386), so
    tests of one stack were spread over the workers and each started it; the groups are
    applied here instead."""
    if config.getvalue("dist") != "loadgroup":
        return None
    config.option.loadscopereorder = False  # the workers' order stands: see above
    return StackScheduling(config, log)


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
