"""Answer metrics that need no model.

- citation precision: of the sources an answer cites, the share whose document is relevant;
- answer support: of the answer's sentences, the share that cite a source whose text contains
  most of the sentence's words (an extractive answer scores 1.0; a model that cites a source
  for something the source does not say does not; the offline generator's answer that the
  documents found do not answer claims nothing, and is not judged);
- exact match and fuzzy match (token F1, as SQuAD scores it) against an expected answer;
- answer recall: the share of the expected answer's terms the answer holds (an extractive
  answer of three sentences that includes the expected one scores 1.0, where its F1 would be
  low for the other two).

Where a case has several expected answers (each right on its own), an answer scores the best
of its scores against each, as SQuAD scores several gold answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from rag_query.generation.extractive import NOT_ANSWERED
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


def answer_support(
    answer: str,
    sources: Mapping[int, str],
    analyzer: Analyzer,
    no_claims: Collection[str] = (NOT_ANSWERED,),
) -> float | None:
    """``sources``: source number -> its text; ``no_claims``: the answers that claim nothing
    (ANSWER_NOT_ANSWERED, ANSWER_NO_DOCUMENTS): not judged."""
    if answer.strip() in no_claims:
        return None
    sentences = _claims(answer)
    judged = 0
    supported = 0
    for sentence in sentences:
        numbers = [int(n) for n in CITATION.findall(sentence)]
        words = _terms(sentence, analyzer)
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
    return _f1(Counter(_normalise(answer).split()), Counter(_normalise(expected).split()))


def _f1(got: Counter[str], want: Counter[str]) -> float:
    if not got or not want:
        return float(got == want)
    common = sum((got & want).values())
    if not common:
        return 0.0
    precision, recall = common / got.total(), common / want.total()
    return 2 * precision * recall / (precision + recall)


def _terms(text: str, analyzer: Analyzer) -> set[str]:
    return set(analyzer.terms(CITATION.sub(" ", text)))


def _recall(wanted: set[str], held: set[str]) -> float | None:
    return len(wanted & held) / len(wanted) if wanted else None


def answer_recall(answer: str, expected: str, analyzer: Analyzer) -> float | None:
    return _recall(_terms(expected, analyzer), _terms(answer, analyzer))


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def against_expected(
    answer: str, expected: Sequence[str], analyzer: Analyzer
) -> dict[str, float | None]:
    """Exact match, fuzzy match and answer recall: each the best against any of ``expected``
    (all None if there is none). The answer is normalised and analysed once, whatever the
    number of expected answers."""
    if not expected:
        return dict.fromkeys(("exact_match", "fuzzy_match", "answer_recall"))
    normalised = _normalise(answer)
    got = Counter(normalised.split())
    held = _terms(answer, analyzer)
    wants = [_normalise(one) for one in expected]
    recalls = [r for one in expected if (r := _recall(_terms(one, analyzer), held)) is not None]
    return {
        "exact_match": max(float(normalised == want) for want in wants),
        "fuzzy_match": max(_f1(got, Counter(want.split())) for want in wants),
        "answer_recall": max(recalls) if recalls else None,
    }
