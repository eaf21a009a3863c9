"""Counting tokens offline, for budgets (the context given to a generator).

The packaged all-MiniLM-L6-v2 WordPiece tokenizer: no download, and within a few percent of
the BPE tokenizers LLMs use on English text, which is all a budget needs.
"""

from __future__ import annotations

from functools import lru_cache

from tokenizers import Tokenizer

from rag_core.embedding.local import packaged_model_dir


@lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(packaged_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)
