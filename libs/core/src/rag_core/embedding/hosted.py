"""Hosted embedding models: any OpenAI-compatible API, and Google Gemini (google-genai).

Chunking still needs a tokenizer; these providers do not expose theirs offline, so token
counts and spans come from the local all-MiniLM-L6-v2 tokenizer (a WordPiece tokenizer counts
a little more tokens than OpenAI's or Gemini's, so chunks stay within their limits).
Vectors are normalised to unit length, as Chroma's cosine space and our fusion expect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag_core.embedding.base import EmbeddingError, Vectors
from rag_core.embedding.wordpiece import counting_tokenizer, token_spans

MAX_INPUTS_PER_CALL = 96


def _normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class _HostedEmbedder:
    """What the hosted embedders share: their identity, and token counting for chunking."""

    provider = ""

    def __init__(self, *, model: str, dimension: int, max_tokens: int) -> None:
        self._model = model
        self._dimension = dimension
        self._max_tokens = max_tokens

    @property
    def model(self) -> str:
        return f"{self.provider}/{self._model}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encodings = counting_tokenizer().encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return token_spans(text)


class OpenAIEmbedder(_HostedEmbedder):
    """OpenAI's embeddings API, or any server that speaks it (vLLM, Ollama, llama.cpp...)."""

    provider = "openai"

    def __init__(
        self,
        *,
        model: str,
        dimension: int,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        max_tokens: int = 8000,
    ) -> None:
        from openai import AsyncOpenAI  # noqa: PLC0415 - only for collections that use it

        super().__init__(model=model, dimension=dimension, max_tokens=max_tokens)
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        import openai  # noqa: PLC0415

        rows: list[list[float]] = []
        for start in range(0, len(texts), MAX_INPUTS_PER_CALL):
            batch = list(texts[start : start + MAX_INPUTS_PER_CALL])
            try:
                response = await self._client.embeddings.create(
                    model=self._model, input=batch, encoding_format="float"
                )
            except (
                openai.APIConnectionError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as exc:
                raise EmbeddingError(
                    f"OpenAI embeddings unavailable: {exc}", transient=True
                ) from exc
            except openai.APIStatusError as exc:
                raise EmbeddingError(
                    f"OpenAI embeddings refused the request ({exc.status_code}): {exc.message}",
                    transient=False,
                ) from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            rows += [item.embedding for item in ordered]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        if vectors.shape[1] != self._dimension:
            raise EmbeddingError(
                f"{self.model} returned {vectors.shape[1]} dimensions; the collection expects "
                f"{self._dimension}",
                transient=False,
            )
        return _normalise(vectors)

    async def embed_query(self, text: str) -> Vectors:
        return np.asarray((await self.embed_documents([text]))[0], dtype=np.float32)

    async def close(self) -> None:
        await self._client.close()


class GoogleEmbedder(_HostedEmbedder):
    """Gemini embeddings through google-genai (the maintained successor of
    google-generativeai)."""

    provider = "google"

    def __init__(
        self,
        *,
        model: str,
        dimension: int,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_tokens: int = 2000,
    ) -> None:
        from google import genai  # noqa: PLC0415
        from google.genai import types  # noqa: PLC0415

        super().__init__(model=model, dimension=dimension, max_tokens=max_tokens)
        self._types = types
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000)),
        )

    async def _embed(self, texts: Sequence[str], task: str) -> Vectors:
        from google.genai import errors  # noqa: PLC0415

        rows: list[list[float]] = []
        for start in range(0, len(texts), MAX_INPUTS_PER_CALL):
            batch = list(texts[start : start + MAX_INPUTS_PER_CALL])
            try:
                response = await self._client.aio.models.embed_content(
                    model=self._model,
                    contents=batch,  # type: ignore[arg-type]
                    config=self._types.EmbedContentConfig(
                        task_type=task, output_dimensionality=self._dimension
                    ),
                )
            except errors.APIError as exc:
                transient = exc.code in (408, 429) or exc.code >= 500
                raise EmbeddingError(
                    f"Google embeddings {'unavailable' if transient else 'refused the request'}"
                    f" ({exc.code}): {exc.message}",
                    transient=transient,
                ) from exc
            except OSError as exc:
                raise EmbeddingError(
                    f"Google embeddings unreachable: {exc}", transient=True
                ) from exc
            rows += [list(e.values or []) for e in response.embeddings or []]
        if len(rows) != len(texts):
            raise EmbeddingError(
                f"{self.model} returned {len(rows)} vectors for {len(texts)} texts", transient=True
            )
        return _normalise(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return await self._embed(texts, "RETRIEVAL_DOCUMENT")

    async def embed_query(self, text: str) -> Vectors:
        return np.asarray((await self._embed([text], "RETRIEVAL_QUERY"))[0], dtype=np.float32)
