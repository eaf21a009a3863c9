"""OpenAI-compatible and Gemini embedders, through the official SDKs, against recorded
responses served over real HTTP on loopback."""

from __future__ import annotations

import typing

import numpy as np
import pytest
from pydantic import SecretStr
from rag_config import IngestSettings
from rag_config.settings import EmbeddingModel
from rag_core.embedding.base import EmbeddingError
from rag_core.embedding.hosted import GoogleEmbedder, OpenAIEmbedder
from rag_core.embedding.models import MODELS, EmbedderFactory
from rag_core.errors import InvalidInput

from tests.support.replay import replay_server


def _openai(url: str) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model="text-embedding-3-small",
        dimension=8,
        api_key="sk-test",
        base_url=f"{url}/v1",
        max_retries=0,
    )


def _google(url: str) -> GoogleEmbedder:
    return GoogleEmbedder(model="gemini-embedding-001", dimension=8, api_key="g-test", base_url=url)


async def test_openai_request_and_normalised_vectors_in_input_order() -> None:
    with replay_server((200, "openai_embeddings.json")) as replay:
        vectors = await _openai(replay.url).embed_documents(["first text", "second text"])
    [request] = replay.requests
    assert request["path"] == "/v1/embeddings"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert request["json"] == {
        "model": "text-embedding-3-small",
        "input": ["first text", "second text"],
        "encoding_format": "float",
    }
    # The response listed index 1 first; vectors come back in input order, unit length.
    assert np.allclose(vectors[0], [1, 0, 0, 0, 0, 0, 0, 0])
    assert np.allclose(vectors[1], [0, 0.6, 0, 0.8, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("status", "recorded", "transient"),
    [
        (429, "openai_error_429.json", True),
        (500, "openai_error_429.json", True),
        (401, "openai_error_401.json", False),
    ],
)
async def test_openai_errors_say_whether_to_retry(
    status: int, recorded: str, transient: bool
) -> None:
    with replay_server((status, recorded)) as replay, pytest.raises(EmbeddingError) as caught:
        await _openai(replay.url).embed_documents(["x"])
    assert caught.value.transient is transient
    assert "sk-test" not in str(caught.value) or status == 401  # the API's own message


async def test_openai_dimension_mismatch_is_refused() -> None:
    with replay_server((200, "openai_embeddings.json")) as replay:
        embedder = OpenAIEmbedder(
            model="text-embedding-3-small",
            dimension=1536,
            api_key="sk-test",
            max_retries=0,
            base_url=f"{replay.url}/v1",
        )
        with pytest.raises(EmbeddingError, match="returned 8 dimensions") as caught:
            await embedder.embed_documents(["a", "b"])
    assert caught.value.transient is False


async def test_gemini_request_task_types_and_vectors() -> None:
    with replay_server(
        (200, "google_batch_embed.json"), (200, "google_single_embed.json")
    ) as replay:
        embedder = _google(replay.url)
        vectors = await embedder.embed_documents(["alpha", "beta"])
        query = await embedder.embed_query("alpha?")
    first, second = replay.requests
    assert "gemini-embedding-001:batchEmbedContents" in first["path"]
    assert first["headers"]["x-goog-api-key"] == "g-test"
    requests = first["json"]["requests"]
    assert [r["content"]["parts"][0]["text"] for r in requests] == ["alpha", "beta"]
    assert {r["taskType"] for r in requests} == {"RETRIEVAL_DOCUMENT"}
    assert {r["outputDimensionality"] for r in requests} == {8}
    assert second["json"]["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    assert np.allclose(vectors[0], [1, 0, 0, 0, 0, 0, 0, 0])
    assert np.allclose(vectors[1], [0, 0, 0.6, 0.8, 0, 0, 0, 0])
    assert np.allclose(query, [0, 1, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("status", "recorded", "transient"),
    [(429, "google_error_429.json", True), (400, "google_error_400.json", False)],
)
async def test_gemini_errors_say_whether_to_retry(
    status: int, recorded: str, transient: bool
) -> None:
    with replay_server((status, recorded)) as replay, pytest.raises(EmbeddingError) as caught:
        await _google(replay.url).embed_documents(["x"])
    assert caught.value.transient is transient


def test_hosted_embedders_count_tokens_for_chunking() -> None:
    embedder = OpenAIEmbedder(model="m", dimension=8, api_key="k", base_url="http://127.0.0.1:1")
    assert embedder.count_tokens(["hello world"]) == [2]
    assert embedder.token_spans("hello world") == [(0, 5), (6, 11)]


def test_factory_needs_the_key_and_knows_every_configurable_model() -> None:
    assert set(MODELS) == set(typing.get_args(EmbeddingModel))
    factory = EmbedderFactory(IngestSettings(_env_file=None, openai_api_key=None))
    with pytest.raises(InvalidInput, match="needs OPENAI_API_KEY"):
        factory.check_available("openai/text-embedding-3-small")
    with pytest.raises(InvalidInput, match="unknown embedding model"):
        factory.check_available("word2vec")
    keyed = EmbedderFactory(
        IngestSettings(
            _env_file=None,
            openai_api_key=SecretStr("sk-x"),
            openai_base_url="http://127.0.0.1:1/v1",
        )
    )
    embedder = keyed.get("openai/text-embedding-3-small")
    assert (embedder.model, embedder.dimension) == ("openai/text-embedding-3-small", 1536)
    assert keyed.get("openai/text-embedding-3-small") is embedder
