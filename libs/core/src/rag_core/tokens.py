"""Counting tokens offline, for budgets (the context given to a generator).

The packaged all-MiniLM-L6-v2 WordPiece tokenizer: no download, and within a few percent of
the BPE tokenizers LLMs use on English text, which is all a budget needs.
"""

from __future__ import annotations

from rag_core.embedding.wordpiece import counting_tokenizer


def count_tokens(text: str) -> int:
    return len(counting_tokenizer().encode(text, add_special_tokens=False).ids)
