"""A small deterministic embedder for tests of the ingest state machine (versions, cleanups,
tenants) where what matters is what is stored where, not what the vectors mean: the ONNX
model is tested on its own (tests/unit/core/test_local_embedder.py) and end to end."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

WORD = re.compile(r"\S+")


class WordHashEmbedder:
    """One token per whitespace-separated word; a word's vector comes from its hash, a
    text's is the normalised sum. Same text, same vector, on every run."""

    model = "all-MiniLM-L6-v2"
    dimension = 384
    max_tokens = 256

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(WORD.findall(text)) for text in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in WORD.finditer(text)]

    def _vector(self, text: str) -> NDArray[np.float32]:
        total = np.zeros(self.dimension, dtype=np.float32)
        for word in WORD.findall(text.lower()) or [""]:
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
            total += np.random.default_rng(seed).standard_normal(self.dimension, np.float32)
        norm = float(np.linalg.norm(total)) or 1.0
        return total / norm

    async def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, 384))

    async def embed_query(self, text: str) -> NDArray[np.float32]:
        return self._vector(text)
