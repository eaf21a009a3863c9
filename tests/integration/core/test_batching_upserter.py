"""Coalesced Chroma writes against a REAL Chroma: one bad write fails only its sender."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from rag_config import IngestSettings
from rag_core.chroma import BatchingUpserter, ChromaClient, ChromaRequestError

from tests.conftest import Backing

pytestmark = pytest.mark.integration


def _vectors(count: int) -> np.ndarray:
    return np.random.default_rng(count).random((count, 8), dtype=np.float32)


async def test_one_invalid_write_fails_alone_and_repeated_ids_are_written_once(
    chroma_server: Backing,
) -> None:
    settings = IngestSettings(
        _env_file=None, chroma_host="127.0.0.1", chroma_port=chroma_server.chroma_port
    )
    chroma = ChromaClient(settings, settings)
    try:
        collection = await chroma.create_collection(f"upsert-{uuid.uuid4().hex[:8]}", {"t": 1})
        upserter = BatchingUpserter(chroma)

        def write(ids: list[str], metadata: dict) -> asyncio.Task[None]:
            return asyncio.create_task(
                upserter.upsert(collection.id, ids, _vectors(len(ids)), ids, [metadata] * len(ids))
            )

        blocker = write(["first"], {"k": 1})  # the next three wait for it and go together
        good = write(["a", "b"], {"k": 2})
        bad = write(["c"], {"nested": {"not": "allowed"}})
        again = write(["b", "d"], {"k": 3})
        outcomes = await asyncio.gather(blocker, good, bad, again, return_exceptions=True)
        assert outcomes[0] is None
        assert outcomes[1] is None
        assert isinstance(outcomes[2], ChromaRequestError)
        assert outcomes[3] is None
        rows = await chroma.get(collection.id)
        stored = dict(zip(rows.ids, rows.metadatas, strict=True))
        assert sorted(stored) == ["a", "b", "d", "first"]
        assert stored["b"]["k"] == 3  # "b" came twice: its last writer wins
    finally:
        await chroma.close()
