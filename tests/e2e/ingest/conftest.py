"""An ingest stack of real processes: Redis, Chroma, the ingest API and one worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rag_devstack import NativeStack, StackPorts

from tests.support.ingest import IngestClient


@pytest.fixture(scope="package")
def ingest_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("ingest"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "VERSION_GRACE_SECONDS": "2",
            "PARSE_TIMEOUT_SECONDS": "5",
        },
    )
    with stack:
        stack.start(services=["ingest"])
        yield stack


@pytest.fixture
def client(ingest_stack: NativeStack) -> IngestClient:
    return IngestClient(ingest_stack.api_url("ingest"))
