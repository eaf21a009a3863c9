"""The lexical index filters its hits in Python; Chroma filters dense hits. Both must agree:
every operator, on present and missing fields, across value kinds, against a REAL Chroma."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from rag_config import IngestSettings
from rag_core.chroma import ChromaClient
from rag_core.filters import matches, validate_filter

from tests.conftest import Backing

pytestmark = pytest.mark.integration
VALUES: list[object] = [1, 2, 2.5, -3, 0, "a", "b", True, False]


@pytest.fixture
async def records(chroma_server: Backing) -> AsyncIterator[tuple[ChromaClient, str, list[dict]]]:
    settings = IngestSettings(
        _env_file=None, chroma_host="127.0.0.1", chroma_port=chroma_server.chroma_port
    )
    chroma = ChromaClient(settings, settings)
    collection = await chroma.create_collection(f"f-{uuid.uuid4().hex[:8]}", {"t": 1})
    rng = random.Random(7)
    metadatas = []
    for i in range(80):
        metadata: dict[str, object] = {"n": i}
        for field in ("x", "y"):
            if rng.random() < 0.75:
                metadata[field] = rng.choice(VALUES)
        metadatas.append(metadata)
    ids = [str(i) for i in range(len(metadatas))]
    vectors = np.random.default_rng(1).random((len(ids), 4), dtype=np.float32)
    await chroma.upsert(collection.id, ids, vectors, ids, metadatas)  # type: ignore[arg-type]
    yield chroma, collection.id, metadatas
    await chroma.close()


def _conditions() -> list[dict]:
    found = []
    for operator in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"):
        for value in VALUES:
            if operator in ("$gt", "$gte", "$lt", "$lte") and isinstance(value, str | bool):
                continue
            operand = [value] if operator in ("$in", "$nin") else value
            found.append({"x": {operator: operand}})
    found.append({"x": {"$in": [1, 2, 3]}})
    found.append({"y": {"$nin": ["a", "b"]}})
    return found


async def test_every_operator_selects_what_chroma_selects(
    records: tuple[ChromaClient, str, list[dict]],
) -> None:
    chroma, collection_id, metadatas = records
    conditions = _conditions()
    rng = random.Random(3)
    combined = [
        {"$and": [rng.choice(conditions), {"y": rng.choice([1, "a", True])}]} for _ in range(10)
    ] + [{"$or": [rng.choice(conditions), rng.choice(conditions)]} for _ in range(10)]
    for raw in conditions + combined:
        where = validate_filter(raw)
        stored = await chroma.get(collection_id, where=where, documents=False)
        chosen = {str(i) for i, metadata in enumerate(metadatas) if matches(where, metadata)}
        assert set(stored.ids) == chosen, raw
