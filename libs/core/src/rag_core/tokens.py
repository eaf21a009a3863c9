"""Counting tokens offline, for budgets (the context given to a generator).

The packaged all-MiniLM-L6-v2 WordPiece tokenizer: no download, and within a few percent of
the BPE tokenizers LLMs use on English text, which is all a budget needs.
"""

from __future__ import annotations

from rag_core.embedding.wordpiece import counting_tokenizer


def count_tokens(text: str) -> int:
    return len(counting_tokenizer().encode(text, add_special_tokens=False).ids)


def last_tokens(text: str, limit: int) -> str:
    """The end of ``text`` that holds at most ``limit`` tokens, from a word's start (a
    word's last pieces alone, "##ism", would count as other tokens once cut)."""
    if limit <= 0:
        return ""
    encoding = counting_tokenizer().encode(text, add_special_tokens=False)
    if len(encoding.ids) <= limit:
        return text
    first = len(encoding.ids) - limit
    while first < len(encoding.ids) and encoding.tokens[first].startswith("##"):
        first += 1
    return text[encoding.offsets[first][0] :] if first < len(encoding.ids) else ""
