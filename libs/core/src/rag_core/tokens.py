"""Counting tokens offline, for budgets (the context given to a generator).

The packaged all-MiniLM-L6-v2 WordPiece tokenizer: no download, and within a few percent of
the BPE tokenizers LLMs use on English text, which is all a budget needs.
"""

from __future__ import annotations

from rag_core.embedding.wordpiece import counting_tokenizer


def count_tokens(text: str) -> int:
    return len(counting_tokenizer().encode(text, add_special_tokens=False).ids)


def last_tokens(text: str, limit: int) -> str:
    """The end of ``text`` that holds at most ``limit`` tokens, from a token's start."""
    if limit <= 0:
        return ""
    offsets = counting_tokenizer().encode(text, add_special_tokens=False).offsets
    return text if len(offsets) <= limit else text[offsets[-limit][0] :]
