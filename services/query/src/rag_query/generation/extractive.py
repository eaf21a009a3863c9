"""The offline generator: picks the sentences of the sources that best match the question
and stitches them together in source order, each followed by its citation.

Nothing is invented: every word of the answer is a sentence of a cited source. Sentences
score by the inverse document frequency of the question's terms they contain (rare terms
count more, as in BM25), damped for long sentences and nudged towards higher-ranked sources.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from rag_query.generation.base import Message, Usage
from rag_query.generation.sources import Source, quoted
from rag_query.retrieval.analyzer import Analyzer

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}|\n(?=[-*#•])")
MAX_SENTENCES = 4
MAX_ANSWER_CHARS = 1200
RELATIVE_FLOOR = 0.6
MIN_WORDS = 4  # shorter pieces are mostly headings


@dataclass(frozen=True)
class _Sentence:
    text: str
    source: int  # number
    rank: int  # the source's rank, 0 first
    position: int
    score: float


def split_sentences(text: str) -> list[str]:
    pieces = [" ".join(p.split()) for p in _SENTENCE_END.split(text)]
    return [p for p in pieces if len(p) >= 3]


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, analyzer: Analyzer, idf: Callable[[str], float] | None = None) -> None:
        self.analyzer = analyzer
        self.idf = idf or (lambda _term: 1.0)

    def select(self, question: str, sources: Sequence[Source]) -> list[_Sentence]:
        wanted = set(self.analyzer.terms(question))
        candidates: list[_Sentence] = []
        for rank, source in enumerate(sources):
            for position, text in enumerate(split_sentences(source.text)):
                if len(text.split()) < MIN_WORDS:
                    continue
                terms = set(self.analyzer.terms(text))
                overlap = sum(self.idf(t) for t in wanted & terms)
                if not overlap:
                    continue
                score = overlap / (1.0 + math.log1p(len(terms) / 25)) + 0.3 / (rank + 1)
                candidates.append(_Sentence(text, source.number, rank, position, score))
        if not candidates and sources:
            # Nothing shares a word with the question (a match by meaning only): lead with
            # the best source's opening sentences rather than with nothing.
            opening = split_sentences(sources[0].text)[:2]
            candidates = [
                _Sentence(text, sources[0].number, 0, i, 1.0 - i) for i, text in enumerate(opening)
            ]
        chosen: list[_Sentence] = []
        seen: set[frozenset[str]] = set()
        length = 0
        ranked = sorted(candidates, key=lambda s: (-s.score, s.rank, s.position))
        floor = ranked[0].score * RELATIVE_FLOOR if ranked else 0.0
        for sentence in ranked:
            if sentence.score < floor:
                break  # much weaker than the best: more likely noise than support
            key = frozenset(self.analyzer.terms(sentence.text))
            if key in seen or (chosen and length + len(sentence.text) > MAX_ANSWER_CHARS):
                continue
            seen.add(key)
            chosen.append(sentence)
            length += len(sentence.text)
            if len(chosen) >= MAX_SENTENCES:
                break
        return sorted(chosen, key=lambda s: (s.rank, s.position))

    async def answer(
        self,
        question: str,
        sources: Sequence[Source],
        history: Sequence[Message],
        usage: Usage,
    ) -> AsyncIterator[str]:
        chosen = self.select(question, sources)
        usage.input_tokens = sum(len(s.text.split()) for s in sources)
        pieces = []
        for i, sentence in enumerate(chosen):
            last_of_source = i + 1 == len(chosen) or chosen[i + 1].source != sentence.source
            text = quoted(sentence.text)  # a "[3]" in the document cites nothing
            pieces.append(text + (f" [{sentence.source}]" if last_of_source else ""))
        text = " ".join(pieces)
        usage.output_tokens = len(text.split())
        for word in re.findall(r"\S+\s*", text):
            yield word
