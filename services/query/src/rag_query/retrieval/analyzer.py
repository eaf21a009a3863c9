"""Text to BM25 terms: lower-cased words, English stop words dropped, Snowball-stemmed.

The same analysis runs on chunks when they are indexed and on queries, on every replica, so
equal texts always give equal terms.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERM_CHARS = 40

# The usual English stop words (the list Lucene's English analyzer and BEIR's BM25 baseline use).
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)


class Analyzer:
    def __init__(self, language: str = "english") -> None:
        self._stemmer = Stemmer.Stemmer(language)
        self._stem = lru_cache(maxsize=200_000)(self._stemmer.stemWord)

    def terms(self, text: str) -> list[str]:
        """The terms of ``text`` in order, repeats kept (their counts are term frequencies)."""
        words = (w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS)
        return [self._stem(w) for w in words if len(w) <= MAX_TERM_CHARS]
