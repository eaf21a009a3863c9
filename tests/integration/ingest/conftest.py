"""The ingest components on REAL Redis and Chroma, each test under a Redis prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from rag_config import IngestSettings
from rag_core.chroma import ChromaClient
from rag_core.clients import create_redis
from rag_core.embedding.models import model_spec
from rag_ingest.components import IngestComponents

from tests.conftest import Backing


@pytest.fixture
async def parts(backing: Backing) -> AsyncIterator[IngestComponents]:
    settings = IngestSettings(
        _env_file=None,
        redis_url=backing.redis_url,
        chroma_host="127.0.0.1",
        chroma_port=backing.chroma_port,
        redis_prefix=f"t{uuid.uuid4().hex[:12]}",
        version_grace_seconds=0,
        reembed_batch_documents=2,
    )
    redis = create_redis(settings, settings)
    chroma = ChromaClient(settings, settings)
    built = IngestComponents.build(settings, redis, chroma, model_spec)
    yield built
    await chroma.close()
    await redis.aclose()
