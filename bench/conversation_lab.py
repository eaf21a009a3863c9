"""Follow-up questions over our own docs/, in-process: for each conversation of
bench/docs_conversations.jsonl, the earlier turns are asked and answered (hybrid retrieval and
the offline generator, as answer_lab.py builds them), then the last turn's retrieval is scored
by hit@5: whether one of its five best chunks holds the passage that answers it; and its
answer by whether it holds the passage (80% of its terms). Each way of
searching with the conversation is tried on the same corpus.

    .venv/bin/python bench/conversation_lab.py [--show]

The figure in docs/benchmarks.md comes through the chat API (tests/e2e/query/
test_docs_answers.py, or bench/quality.py); this is the fast loop for choosing the method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from answer_lab import Bench, recall, retrieve
from rag_core.tokens import count_tokens
from rag_query.generation.base import Message, Usage
from rag_query.generation.extractive import NOT_ANSWERED, ExtractiveGenerator
from rag_query.generation.sources import Source, select_sources
from rag_query.retrieval.fusion import fuse_rankings
from rag_query.retrieval.history import history_queries, refers_back
from rag_query.retrieval.search import Hit

ROOT = Path(__file__).resolve().parents[1]
CONVERSATIONS = ROOT / "bench" / "docs_conversations.jsonl"
HIT_AT = 5
CONTEXT_TOKENS = 3000


def _flat(text: str) -> str:
    return " ".join(text.split())


Search = Callable[[Bench, str, list[Message]], list[Hit]]


def _fused(bench: Bench, queries: list[tuple[str, float]]) -> list[Hit]:
    found: dict[str, Hit] = {}
    rankings: dict[str, list[str]] = {}
    weights: dict[str, float] = {}
    for i, (query, weight) in enumerate(queries):
        hits = retrieve(bench.corpus, bench.embedder, query)
        rankings[str(i)], weights[str(i)] = [h.chunk_id for h in hits], weight
        for hit in hits:
            found.setdefault(hit.chunk_id, hit)
    return [found[c] for c, _ in fuse_rankings(rankings, weights, 60)]


def latest(bench: Bench, question: str, history: list[Message]) -> list[Hit]:
    return retrieve(bench.corpus, bench.embedder, question)


def users(history: list[Message], last: int | None = None) -> list[str]:
    asked = [m.content for m in history if m.role == "user"]
    return asked[-last:] if last else asked


def conversation_weighted(weight: Callable[[str], float]) -> Search:
    """RRF of the message alone and after every earlier user turn, the latter weighted."""
    return lambda b, q, h: _fused(b, [(q, 1.0), (" ".join([*users(h), q]), weight(q))])


def one_query(last: int | None) -> Search:
    return lambda b, q, h: retrieve(b.corpus, b.embedder, " ".join([*users(h, last), q]))


def shipped(bench: Bench, question: str, history: list[Message]) -> list[Hit]:
    """What the query service does (rag_query.retrieval.history)."""
    return _fused(bench, history_queries(question, history))


METHODS: dict[str, Search] = {
    "latest message only (before)": latest,
    "every user turn, one query": one_query(None),
    "previous user turn + latest, one query": one_query(1),
    "RRF(latest, every user turn)": conversation_weighted(lambda q: 1.0),
    "RRF(latest, every user turn x2)": conversation_weighted(lambda q: 2.0),
    "RRF(latest, every user turn x 8/words)": conversation_weighted(
        lambda q: 8 / max(1, len(q.split()))
    ),
    "RRF(latest, every user turn x2) if it refers back, else x0.5": conversation_weighted(
        lambda q: 2.0 if refers_back(q) else 0.5
    ),
    "shipped: RRF(latest, every user turn x2) if it refers back, else latest": shipped,
}


def converse(bench: Bench, turns: list[str], method: Search) -> tuple[list[Hit], str, int]:
    """Asks every turn as a chat client would, sending the answers back (the generator is
    given the conversation, as the service gives it, but for the method of before, which
    used none of it); the last turn's hits and answer, and how many turns were answered
    that the documents do not answer."""
    history: list[Message] = []
    declined = 0
    generator = bench.generator()
    if method is latest:
        generator.history_turns = 0
    for index, turn in enumerate(turns):
        hits = method(bench, turn, history)[:HIT_AT]
        sources = select_sources(hits, CONTEXT_TOKENS, count_tokens)
        text = asyncio.run(_answer(generator, turn, sources, history))
        declined += text == NOT_ANSWERED
        if index == len(turns) - 1:
            return hits, text, declined
        history += [Message("user", turn), Message("assistant", text)]
    raise ValueError("a conversation without turns")


async def _answer(
    generator: ExtractiveGenerator, question: str, sources: list[Source], history: list[Message]
) -> str:
    pieces = [p async for p in generator.answer(question, sources, history, Usage())]
    return "".join(pieces).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--show", action="store_true", help="print each miss")
    parser.add_argument(
        "--conversations",
        type=Path,
        default=CONVERSATIONS,
        help="the set (bench/docs_conversations_holdout.jsonl: written apart, never tuned on)",
    )
    args = parser.parse_args()
    lines = args.conversations.read_text().splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    bench = Bench()
    print(f"{len(cases)} conversations, hit@{HIT_AT} of the last turn")
    for label, method in METHODS.items():
        hits = holds = declined = turns = 0
        switches = [0, 0]
        for case in cases:
            found, text, said = converse(bench, case["turns"], method)
            declined += said
            turns += len(case["turns"])
            hit = any(_flat(case["passage"]) in _flat(h.text) for h in found)
            hits += hit
            holds += (recall([case["passage"]], text, bench.analyzer) or 0.0) >= 0.8
            if case.get("switch"):
                switches[0] += hit
                switches[1] += 1
            if args.show and not hit:
                print(
                    f"  miss {case['id']} ({label}): {case['turns'][-1]!r} -> "
                    f"{[h.document_id for h in found]}"
                )
        print(
            f"{label}: {hits / len(cases):.3f} ({hits}/{len(cases)}; follow-ups "
            f"{hits - switches[0]}/{len(cases) - switches[1]}, topic switches "
            f"{switches[0]}/{switches[1]}) | the answer holds the passage {holds}/{len(cases)} "
            f"| turns answered that the documents do not answer: {declined}/{turns}",
            flush=True,
        )
    bench.close()


if __name__ == "__main__":
    main()
