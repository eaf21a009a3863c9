"""Sentence-level dense scores on BEIR SciFact, in-process, with 2-fold cross-validation.

Each abstract's sentences (the extractive generator's splitter) are embedded after the
document's title, as a chunk is (``chunk_header``); a document's sentence score is its best
sentence's cosine with the query. Three ways of using it are tried against the shipped
settings (``quality_lab.SHIPPED``): fused with the shipped hybrid's document ranking (RRF with a
weight, or a min-max convex combination); and fused with BM25 by documents (each document's
best chunk on each side, the product's convex fusion) with the sentence scores as the dense
side, or the better of a document's chunk and sentence scores, against the same fusion by
documents with the chunk scores alone (the control: fusing by documents instead of by chunks
is a change of its own). Each fold (the lab's: query ids alternately) picks the best among them
and the shipped settings, and is scored on the other.

    .venv/bin/python bench/sentence_lab.py

Vectors are cached with the lab's (.dev/quality-lab); the sentences take about 3.5 minutes to
embed on 2 cores the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ir_measures
import numpy as np
from ir_measures import nDCG
from quality_lab import HEADER_CHARS, SHIPPED, Lab, _documents, load
from rag_ingest.worker.pipeline import chunk_header
from rag_query.generation.extractive import split_sentences
from rag_query.retrieval.fusion import fuse_scores
from rag_query.retrieval.search import SCORE_FLOORS

DEPTH = 100  # documents from each side
Ranking = list[tuple[int, float]]


def sentence_rankings(lab: Lab) -> list[Ranking]:
    """Per query: the DEPTH documents with the best sentences, best first, with its cosine."""
    owner, texts = [], []
    for n, (title, body) in enumerate(zip(lab.corpus.titles, lab.corpus.bodies, strict=True)):
        for sentence in split_sentences(body):
            owner.append(n)
            texts.append(f"{chunk_header(title, (), HEADER_CHARS)}\n{sentence}")
    print(f"{len(texts)} sentences", flush=True)
    vectors = lab._embed(texts, "sentences-title")
    of = np.asarray(owner)
    out = []
    for q in range(len(lab.query_ids)):
        sims = vectors @ lab.query_vectors[q]
        best: dict[int, float] = {}
        for i in np.argsort(-sims):
            best.setdefault(int(of[i]), float(sims[i]))
            if len(best) >= DEPTH:
                break
        out.append(list(best.items()))
    return out


def per_query(lab: Lab, rank: Callable[[int], Ranking]) -> dict[str, float]:
    run = []
    for q, query_id in enumerate(lab.query_ids):
        ranked = rank(q)[:DEPTH]
        run += [
            ir_measures.ScoredDoc(query_id, lab.corpus.ids[d], float(len(ranked) - i))
            for i, (d, _) in enumerate(ranked)
        ]
    found = {m.query_id: float(m.value) for m in ir_measures.iter_calc([nDCG @ 10], lab.qrels, run)}
    return {query_id: found.get(query_id, 0.0) for query_id in lab.query_ids}


def main() -> None:
    corpus, queries, qrels = load(None)
    lab = Lab(corpus, queries, qrels)
    sentences = sentence_rankings(lab)
    chunks = lab.chunks(SHIPPED)
    print(f"{len(chunks.texts)} chunks", flush=True)

    def docs(hits: list[tuple[int, float]]) -> Ranking:
        return _documents([(int(chunks.doc_of[c]), s) for c, s in hits])

    def dense(q: int) -> Ranking:
        return docs(lab._dense_hits(SHIPPED, q)[:DEPTH])

    def lexical(q: int) -> Ranking:
        return docs([(int(c), s) for c, s in lab._lexical_hits(SHIPPED, q)[:DEPTH]])

    def shipped(q: int) -> Ranking:
        dense_hits = lab._dense_hits(SHIPPED, q)[: SHIPPED.depth]
        lexical_hits = [(int(c), s) for c, s in lab._lexical_hits(SHIPPED, q)[: SHIPPED.depth]]
        return docs(lab._fuse(SHIPPED, dense_hits, lexical_hits))

    def rrf(weight: float) -> Callable[[int], Ranking]:
        def rank(q: int) -> Ranking:
            scores: dict[int, float] = {}
            for share, ranking in ((1.0, shipped(q)[:DEPTH]), (weight, sentences[q])):
                for r, (d, _) in enumerate(ranking):
                    scores[d] = scores.get(d, 0.0) + share / (60 + r + 1)
            return sorted(scores.items(), key=lambda p: (-p[1], p[0]))

        return rank

    def convex(weight: float) -> Callable[[int], Ranking]:
        def rank(q: int) -> Ranking:  # min-max: the product's fusion with no floors
            scored: Any = {"shipped": shipped(q)[:DEPTH], "sentences": sentences[q]}
            weights = {"shipped": 1 - weight, "sentences": weight}
            return fuse_scores(scored, weights, {})  # type: ignore[return-value]

        return rank

    def dense_side(how: str, alpha: float) -> Callable[[int], Ranking]:
        def rank(q: int) -> Ranking:
            if how == "chunk":  # the control
                side = dense(q)
            elif how == "sentence":
                side = sentences[q]
            else:  # a document's better score, chunk or sentence
                best = dict(dense(q))
                for d, s in sentences[q]:
                    best[d] = max(best.get(d, -1.0), s)
                side = sorted(best.items(), key=lambda p: -p[1])[:DEPTH]
            weights = {"dense": alpha, "lexical": 1 - alpha}
            # (the product's fusion, on integer ids, as the lab calls it)
            scored: Any = {"dense": side, "lexical": lexical(q)}
            return fuse_scores(scored, weights, SCORE_FLOORS)  # type: ignore[return-value]

        return rank

    ways: dict[str, Callable[[int], Ranking]] = {"shipped": shipped}
    ways["chunks alone (the shipped dense side)"] = dense
    ways["sentences alone"] = lambda q: sentences[q]
    for w in (0.25, 0.5, 1.0):
        ways[f"RRF(shipped, sentences x{w})"] = rrf(w)
    for w in (0.1, 0.2, 0.3, 0.5):
        ways[f"convex(shipped, sentences {w})"] = convex(w)
    for alpha in (0.7, 0.8, 0.9):
        ways[f"by documents, chunks as the dense side, alpha {alpha}"] = dense_side("chunk", alpha)
        ways[f"sentences as the dense side, alpha {alpha}"] = dense_side("sentence", alpha)
        ways[f"max(chunk, sentence) as the dense side, alpha {alpha}"] = dense_side("max", alpha)
    scores = {name: per_query(lab, rank) for name, rank in ways.items()}
    folds = [lab.query_ids[0::2], lab.query_ids[1::2]]

    def mean(name: str, ids: list[str]) -> float:
        return sum(scores[name][i] for i in ids) / len(ids)

    print("| way | all 300 | fold 1 | fold 2 |\n|---|---:|---:|---:|")
    for name in ways:
        print(
            f"| {name} | {mean(name, lab.query_ids):.4f} | {mean(name, folds[0]):.4f} | "
            f"{mean(name, folds[1]):.4f} |"
        )
    candidates = [n for n in ways if not n.endswith(("alone", "side)"))]
    for k in (0, 1):
        pick = max(candidates, key=lambda n: (round(mean(n, folds[k]), 6), n == "shipped"))
        print(
            f"fold {k + 1} picks {pick}: {mean(pick, folds[k]):.4f} on it, "
            f"{mean(pick, folds[1 - k]):.4f} on fold {2 - k} "
            f"(shipped {mean('shipped', folds[1 - k]):.4f})"
        )


if __name__ == "__main__":
    main()
