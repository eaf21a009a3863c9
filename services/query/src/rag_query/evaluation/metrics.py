"""Answer metrics that need no model.

- citation precision: of the sources an answer cites, the share whose document is relevant;
- answer support: of the answer's sentences, the share that cite a source whose text contains
  most of the sentence's words (an extractive answer scores 1.0; a model that cites a source
  for something the source does not say does not);
- exact match and fuzzy match (token F1, as SQuAD scores it) against an expected answer;
- answer recall: the share of the expected answer's terms the answer holds (an extractive
  answer of three sentences that includes the expected one scores 1.0, where its F1 would be
  low for the other two).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

from rag_query.generation.sources import CITATION
from rag_query.retrieval.analyzer import Analyzer

# Sentence ends, keeping the citations after a sentence with it: "A. [1] B [2]." -> two.
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?!\[)|(?<=\])\s+(?!\[)|\n+")
# Fenced code blocks (closed by the same fence) and tables, indented or not.
_BLOCKS = re.compile(
    r"^([ \t]*(?P<fence>`{3,}|~{3,}).*?^[ \t]*(?P=fence)[ \t]*$|(?:^[ \t]*\|[^\n]*(?:\n|\Z))+)",
    re.M | re.S,
)
SUPPORT_SHARE = 0.6  # of a sentence's terms found in the source it cites


def citation_precision(cited_documents: Sequence[str], relevant: Mapping[str, int]) -> float | None:
    if not cited_documents:
        return None
    return sum(1 for doc in cited_documents if relevant.get(doc, 0) > 0) / len(cited_documents)


def _claims(answer: str) -> list[str]:
    """The answer's sentences; a code block or a table is judged with the sentence before it,
    which introduces it and carries its citation ("To revoke a key: [1]" and the command)."""
    claims: list[str] = []
    done = 0
    for block in _BLOCKS.finditer(answer):
        claims += [s.strip() for s in _SENTENCES.split(answer[done : block.start()]) if s.strip()]
        if claims:
            claims[-1] = f"{claims[-1]} {block.group(0)}"
        else:
            claims.append(block.group(0))
        done = block.end()
    return claims + [s.strip() for s in _SENTENCES.split(answer[done:]) if s.strip()]


def answer_support(answer: str, sources: Mapping[int, str], analyzer: Analyzer) -> float | None:
    """``sources``: source number -> its text."""
    sentences = _claims(answer)
    judged = 0
    supported = 0
    for sentence in sentences:
        numbers = [int(n) for n in CITATION.findall(sentence)]
        words = set(analyzer.terms(CITATION.sub(" ", sentence)))
        if not words:
            continue  # a bare citation or punctuation
        judged += 1
        for number in numbers:
            source_terms = set(analyzer.terms(sources.get(number, "")))
            if len(words & source_terms) >= SUPPORT_SHARE * len(words):
                supported += 1
                break
    return supported / judged if judged else None


def _normalise(text: str) -> str:
    text = CITATION.sub(" ", text.lower())
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(answer: str, expected: str) -> float:
    return float(_normalise(answer) == _normalise(expected))


def fuzzy_match(answer: str, expected: str) -> float:
    """Token F1 between the answer and the expected answer."""
    got, want = _normalise(answer).split(), _normalise(expected).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def answer_recall(answer: str, expected: str, analyzer: Analyzer) -> float | None:
    wanted = set(analyzer.terms(CITATION.sub(" ", expected)))
    if not wanted:
        return None
    return len(wanted & set(analyzer.terms(CITATION.sub(" ", answer)))) / len(wanted)


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None
