"""Concurrent small embedding requests are served from a few full batches, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from rag_core.embedding.base import EmbeddingError
from rag_core.embedding.batching import BatchingEmbedder


class CountingEmbedder:
    """A stand-in model: vector i encodes the text's number, and every call is recorded."""

    model = "counting"
    dimension = 2
    max_tokens = 10

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        await asyncio.sleep(0.02)  # a model run takes time; requests pile up meanwhile
        if self.fail:
            raise RuntimeError("model crashed")
        return np.array([[float(t), 1.0] for t in texts], dtype=np.float32)

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self.embed_documents([text]))[0]


async def test_concurrent_requests_share_batches_and_get_their_own_vectors() -> None:
    inner = CountingEmbedder()
    batching = BatchingEmbedder(inner, max_texts=64)
    requests = [[str(i * 10 + j) for j in range(1 + i % 3)] for i in range(40)]
    results = await asyncio.gather(*(batching.embed_documents(r) for r in requests))
    for texts, vectors in zip(requests, results, strict=True):
        assert vectors[:, 0].tolist() == [float(t) for t in texts]
    assert sum(inner.calls) == sum(len(r) for r in requests)
    assert len(inner.calls) <= 4, inner.calls  # not one model run per request
    assert max(inner.calls) <= 64


async def test_a_model_failure_reaches_every_waiting_caller() -> None:
    batching = BatchingEmbedder(CountingEmbedder(fail=True))
    outcomes = await asyncio.gather(
        *(batching.embed_documents(["1", "2"]) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    # And it keeps working afterwards.
    healthy = BatchingEmbedder(CountingEmbedder())
    assert (await healthy.embed_documents(["7"]))[0, 0] == 7.0


async def test_empty_request_and_passthroughs() -> None:
    batching = BatchingEmbedder(CountingEmbedder())
    assert (await batching.embed_documents([])).shape == (0, 2)
    assert batching.count_tokens(["a b"]) == [2]
    assert (batching.model, batching.dimension) == ("counting", 2)


class PickyEmbedder(CountingEmbedder):
    """Refuses any batch holding "bad", as a provider refuses an input that is too long."""

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if "bad" in texts:
            self.calls.append(len(texts))
            await asyncio.sleep(0.02)
            raise EmbeddingError("input too long", transient=False)
        return await super().embed_documents(texts)


async def test_a_refused_input_fails_only_its_own_request() -> None:
    batching = BatchingEmbedder(PickyEmbedder(), max_texts=64)
    first = asyncio.create_task(batching.embed_documents(["1"]))
    await asyncio.sleep(0)  # the next three wait for the first run and share the second
    outcomes = await asyncio.gather(
        batching.embed_documents(["2", "3"]),
        batching.embed_documents(["bad"]),
        batching.embed_documents(["4"]),
        return_exceptions=True,
    )
    assert (await first)[0, 0] == 1.0
    assert isinstance(outcomes[1], EmbeddingError)
    assert outcomes[0][:, 0].tolist() == [2.0, 3.0]
    assert outcomes[2][:, 0].tolist() == [4.0]


async def test_an_outage_fails_every_request_without_retrying_each() -> None:
    class Down(CountingEmbedder):
        async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
            self.calls.append(len(texts))
            await asyncio.sleep(0.02)
            raise EmbeddingError("provider down", transient=True)

    inner = Down()
    batching = BatchingEmbedder(inner, max_texts=64)
    outcomes = await asyncio.gather(
        *(batching.embed_documents([str(i)]) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(o, EmbeddingError) for o in outcomes)
    assert len(inner.calls) <= 2, inner.calls
