"""Fixtures every end-to-end test module can use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rag_devstack import NativeStack


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA_DIR shared by every stack of the session, so the ONNX model is built once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def unthrottled_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[NativeStack]:
    """nginx, gateway, ingest, worker and two query replicas with no rate limit in the way and
    quiet logs: shared by the soak and the fuzzing, each in its own tenant."""
    from tests.e2e.gateway.conftest import load_stack

    stack = load_stack(tmp_path_factory.mktemp("unthrottled"), model_cache)
    with stack:
        stack.start(with_nginx=True, query_replicas=2)
        yield stack
