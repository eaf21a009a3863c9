"""The one embedder interface ingest and query share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


class EmbeddingError(Exception):
    """Embedding failed; ``transient`` says whether retrying later may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors. ``model`` is what a collection records."""

    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Longest input (in the model's tokens) that is embedded without truncation."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model sees it (special tokens excluded)."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (special tokens excluded)."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    async def embed_query(self, text: str) -> Vectors: ...
