"""One native stack for all the fault tests of a module, made whole again after each test.

A fault test stops or kills parts of the stack (Redis, Chroma, the worker) and may start more
workers. After a test that passed, what it stopped is started again, what it added is stopped,
and every part is waited for until it answers: the next test starts from a whole stack. After
a test that failed, the stack is stopped and the next test gets a new one (in a new directory),
so nothing the failure left behind (queued jobs, a stuck process) reaches it. Each test still
uses collections of its own.

Tests that need other settings of the ingest API and workers (``JOB_MAX_TRIES``...) get them
from ``use``: the same Redis and Chroma, the services and worker restarted with the settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from types import TracebackType

import pytest
from rag_devstack import NativeStack, StackPorts

BACKING = ("redis", "chroma")
WORKER = "worker"
# For fault tests: a killed worker's jobs go to another within seconds (the defaults: it is
# taken for dead after 15 s of silence, then its jobs move at the next reconcile, up to 10 s).
QUICK_RECOVERY = {"WORKER_HEARTBEAT_SECONDS": "6", "RECONCILE_INTERVAL_SECONDS": "2"}


class SharedStack:
    """Started by the first test that uses it; ``serve`` is each test's fixture body."""

    def __init__(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        name: str,
        env: Mapping[str, str],
        services: list[str],
    ) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._name = name
        self._env = dict(env)
        self._services = list(services)
        self._settings: dict[str, str] = {}
        self._stack: NativeStack | None = None

    def serve(
        self, request: pytest.FixtureRequest, settings: Mapping[str, str] | None = None
    ) -> Iterator[NativeStack]:
        """A function fixture's body: the stack for one test, made whole (or replaced) after
        it."""
        failed_before = request.session.testsfailed
        yield self.use(settings or {})
        if request.session.testsfailed > failed_before:
            self.discard()
        else:
            self.restore()

    def use(self, settings: Mapping[str, str]) -> NativeStack:
        """The stack, with the services and worker running with ``settings`` in their env."""
        settings = dict(settings)
        if self._stack is None:
            self._settings = settings
            stack = NativeStack(
                self._tmp_path_factory.mktemp(self._name),
                StackPorts.free(),
                env={**self._env, **settings},
            )
            self._stack = stack.start(services=self._services)  # stops what it started if not
            return stack
        stack = self._stack
        if settings != self._settings:
            self._settings = settings
            stack.extra_env = {**self._env, **settings}  # also any worker a test starts
            with self._discarded_on_error():
                self._restart(self._services, with_worker=True)
        return stack

    def restore(self) -> None:
        """Stop the processes a test added; start again the ones it stopped; wait for all."""
        stack = self._stack
        if stack is None:
            return
        with self._discarded_on_error():
            for name in [n for n in stack.processes if n not in (*BACKING, *self._parts())]:
                stack.processes.pop(name).stop()
            if not stack.processes["redis"].is_running():
                stack.processes["redis"].stop()
                stack.start_redis()
            if not stack.processes["chroma"].is_running():
                stack.processes["chroma"].stop()
                stack.start_chroma()
            stopped = [s for s in self._services if not stack.processes[s].is_running()]
            worker_stopped = not stack.processes[WORKER].is_running()
            self._restart(stopped, with_worker=worker_stopped)

    def discard(self) -> None:
        """Stop the stack; the next test gets a new one."""
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.stop()

    def _parts(self) -> list[str]:
        return [*self._services, WORKER]

    def _restart(self, services: list[str], *, with_worker: bool) -> None:
        """Restart ``services`` (and the worker), then wait until every part answers."""
        stack = self._stack
        assert stack is not None
        if with_worker:
            stack.processes[WORKER].stop()
        for service in services:
            stack.processes[service].stop()
        for service in services:
            stack.start_service(service)
        if with_worker:
            stack.start_worker()
        stack.wait_redis()
        stack.wait_chroma()
        for service in self._services:
            stack.wait_ready(service)
        stack.wait_worker()

    @contextlib.contextmanager
    def _discarded_on_error(self) -> Iterator[None]:
        """If what runs inside fails, the stack is discarded (the next test gets a new one)."""
        try:
            yield
        except BaseException:
            self.discard()
            raise

    def __enter__(self) -> SharedStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()
