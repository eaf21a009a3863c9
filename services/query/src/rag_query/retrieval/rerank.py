"""Rerankers: reorder the fused candidates with an LLM, or with Cohere's rerank API."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from typing import Literal

import httpx
from rag_core.errors import DependencyUnavailable

from rag_query.generation.base import GenerationError, Message
from rag_query.generation.llm import GoogleModel, OpenAIModel
from rag_query.generation.prompts import Prompts
from rag_query.metrics import RERANK_SECONDS
from rag_query.retrieval.search import Hit

Reranker = Literal["none", "llm", "cohere"]
RERANKERS: tuple[Reranker, ...] = ("none", "llm", "cohere")
RERANK_CANDIDATES = 20
PASSAGE_CHARS = 1200
COHERE_DEFAULT_URL = "https://api.cohere.com"


async def rerank_with_llm(
    question: str, hits: Sequence[Hit], model: OpenAIModel | GoogleModel, prompts: Prompts
) -> list[Hit]:
    """The LLM lists passage numbers best first; passages it leaves out go to the end in their
    old order (a reranker reorders, it does not silently drop what retrieval found)."""
    started = time.perf_counter()
    passages = "\n\n".join(f"[{i}] {hit.text[:PASSAGE_CHARS]}" for i, hit in enumerate(hits, 1))
    text, _usage = await model.complete(
        [Message("user", prompts.render("rerank", question=question, passages=passages))],
        max_tokens=200,
    )
    order = _numbers(text, len(hits))
    ranked = [hits[n - 1] for n in order] + [h for i, h in enumerate(hits, 1) if i not in order]
    RERANK_SECONDS.labels("llm").observe(time.perf_counter() - started)
    return ranked


def _numbers(text: str, count: int) -> list[int]:
    match = re.search(r"\[[\d,\s]*\]", text)
    try:
        values = json.loads(match.group(0)) if match else []
    except ValueError:
        values = []
    if not values:
        values = [int(v) for v in re.findall(r"\d+", text)]
    return list(dict.fromkeys(v for v in values if isinstance(v, int) and 1 <= v <= count))


class CohereReranker:
    """Cohere's /v2/rerank over HTTP; 429 and 5xx are retried with backoff."""

    def __init__(
        self, *, api_key: str, base_url: str | None, model: str, timeout: float, max_retries: int
    ) -> None:
        self.model = model
        self.max_retries = max_retries
        self._http = httpx.AsyncClient(
            base_url=base_url or COHERE_DEFAULT_URL,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        started = time.perf_counter()
        body = {
            "model": self.model,
            "query": question,
            "documents": [hit.text[: PASSAGE_CHARS * 4] for hit in hits],
            "top_n": len(hits),
        }
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._http.post("/v2/rerank", json=body)
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise DependencyUnavailable(
                        f"Cohere is unreachable ({type(exc).__name__})"
                    ) from exc
                await _pause(attempt)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.max_retries:
                    raise DependencyUnavailable(f"Cohere answered {response.status_code}")
                await _pause(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code >= 400:
                raise GenerationError(
                    f"Cohere refused the rerank request ({response.status_code}): "
                    f"{response.text[:200]}",
                    transient=False,
                )
            break
        results = response.json()["results"]
        order = [int(r["index"]) for r in sorted(results, key=lambda r: -r["relevance_score"])]
        for result in results:
            hits[int(result["index"])].score = float(result["relevance_score"])
        ranked = [hits[i] for i in order] + [h for i, h in enumerate(hits) if i not in order]
        RERANK_SECONDS.labels("cohere").observe(time.perf_counter() - started)
        return ranked


async def _pause(attempt: int, retry_after: str | None = None) -> None:
    delay = min(8.0, 0.5 * 2**attempt)
    if retry_after and retry_after.isdigit():
        delay = min(30.0, float(retry_after))
    await asyncio.sleep(delay)
