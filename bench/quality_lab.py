"""Retrieval-quality ablations on BEIR SciFact, in-process, with 2-fold cross-validation.

Each idea of issue 19 is a grid of settings over the product's own parts: its chunker
(``rag_ingest.chunking``), its int8 MiniLM embedder, its BM25 index and analyzer
(``rag_query.retrieval``) and its fusion. Dense retrieval is exact (numpy) where the product
asks Chroma's HNSW index, which at this size finds the same neighbours.

The 300 test queries are split into two folds (by query id, alternately). For each idea the
best setting is chosen on one fold and scored on the other, both ways: the "test" figures are
never scored on the queries that chose them. Ideas are tried in order, each on top of the
winners before it, and kept only if they win on the tuning folds.

    .venv/bin/python bench/quality_lab.py [--limit N] [--only "IDEA;IDEA"] [--from-shipped]

Embeddings are cached in .dev/quality-lab (a chunking's vectors are computed once).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np
from ir_measures import R, nDCG
from numpy.typing import NDArray
from query_bench import load_test_queries
from rag_core.embedding.local import INT8_FILE, LocalEmbedder
from rag_core.embedding.wordpiece import token_spans
from rag_ingest.chunking import chunk_sections
from rag_ingest.parsing import Section
from rag_ingest.worker.pipeline import chunk_header
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.fusion import fuse_rankings, fuse_scores
from rag_query.retrieval.lexical import IndexedChunk, LexicalIndex
from rag_query.retrieval.search import SCORE_FLOORS

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
CACHE = ROOT / ".dev" / "quality-lab"
MODELS = ROOT / ".dev" / "bench-data" / "models"
MEASURES = [nDCG @ 10, R @ 100]
MAX_DEPTH = 300  # the most candidates an idea asks of each side
HEADER_CHARS = 200  # CHUNK_HEADER_MAX_CHARS
_FEEDBACK_TERM = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Config:
    """One way to retrieve; the defaults are what the product shipped before issue 19."""

    size: int = 200  # chunk tokens
    overlap: int = 40
    # "title": the title on every chunk (indexed text only), for both indexes; "title-lexical"
    # or "title-dense": for one of them; "none": the title is the text's first paragraph
    header: str = "none"
    k1: float = 1.2
    b: float = 0.75
    lexical_level: str = "chunk"  # "document": BM25 over whole documents
    fusion: str = "rrf"  # or "convex" (normalised scores, Bruch et al. 2023)
    rrf_k: int = 60
    dense_weight: float = 1.0  # RRF weight of the dense ranking (lexical 1.0)
    alpha: float = 0.5  # convex: the dense share
    norm: str = "minmax"  # convex: "minmax", "zscore" or "tmm" (theoretical min)
    depth: int = 100  # candidates from each side
    doc_score: str = "max"  # a document's score from its chunks: "max" or "top2"
    # Pseudo-relevance feedback on the lexical side (RM3, Lavrenko and Croft 2001, as
    # Anserini runs it: Lab._expanded): the query's terms plus the ``prf_terms`` likeliest
    # terms of its ``prf_docs`` best BM25 hits, the query keeping ``prf_weight`` of the
    # weight; 0: none.
    prf_docs: int = 0
    prf_terms: int = 10
    prf_weight: float = 0.5

    def changed(self) -> str:
        base = Config()
        diff = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        ]
        return ", ".join(diff) or "defaults"


@dataclass
class Corpus:
    ids: list[str]
    titles: list[str]
    bodies: list[str]


@dataclass
class Chunks:
    doc_of: NDArray[np.int32]  # chunk -> document index
    texts: list[str]  # as BM25 indexes them
    vectors: NDArray[np.float32]  # of the texts as embedded (Config.header)


def load(limit: int | None) -> tuple[Corpus, dict[str, str], list[ir_measures.Qrel]]:
    ids, titles, bodies = [], [], []
    with (SCIFACT / "corpus.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            ids.append(row["_id"])
            titles.append(row["title"].strip())
            bodies.append(row["text"].strip())
    queries, qrels = load_test_queries(SCIFACT)
    if limit:  # every judged document, then others up to ``limit``
        judged = {q.doc_id for q in qrels}
        keep = [i for i, d in enumerate(ids) if d in judged]
        keep += [i for i, d in enumerate(ids) if d not in judged][: max(0, limit - len(keep))]
        keep.sort()
        ids, titles, bodies = (
            [ids[i] for i in keep],
            [titles[i] for i in keep],
            [bodies[i] for i in keep],
        )
    return Corpus(ids, titles, bodies), queries, qrels


class Lab:
    def __init__(self, corpus: Corpus, queries: dict[str, str], qrels: list[ir_measures.Qrel]):
        self.corpus = corpus
        self.query_ids = list(queries)
        self.query_texts = list(queries.values())
        self.qrels = qrels
        self.embedder = LocalEmbedder(MODELS, variant="int8")
        self.analyzer = Analyzer()
        self._chunks: dict[tuple[int, int, str], Chunks] = {}
        self._lexical: dict[tuple[Any, ...], LexicalIndex] = {}
        self._scores: dict[Config, dict[str, dict[str, float]]] = {}
        self._dense_cache: dict[tuple[Any, ...], list[tuple[int, float]]] = {}
        self._lexical_cache: dict[tuple[Any, ...], list[tuple[str, float]]] = {}
        self.query_vectors = self._embed(self.query_texts, "queries")

    def _embed(self, texts: list[str], label: str) -> NDArray[np.float32]:
        # (keyed by the model file too: vectors of another quantization are never reused)
        digest = hashlib.sha256("\x00".join([INT8_FILE, *texts]).encode()).hexdigest()[:20]
        path = CACHE / f"{label}-{digest}.npy"
        if path.exists():
            return np.asarray(np.load(path), dtype=np.float32)
        started = time.perf_counter()
        vectors = np.asarray(self.embedder.embed_sync(texts), dtype=np.float32)
        print(
            f"  embedded {len(texts)} {label} in {time.perf_counter() - started:.0f} s", flush=True
        )
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors

    def chunks(self, config: Config) -> Chunks:
        key = (config.size, config.overlap, config.header)
        if key not in self._chunks:
            doc_of, texts, embedded = [], [], []
            for n, (title, body) in enumerate(
                zip(self.corpus.titles, self.corpus.bodies, strict=True)
            ):
                if config.header == "none":
                    # The title is the text's first paragraph, as ingest got it before.
                    sections = [Section(f"{title}\n\n{body}".strip(), ())]
                    prefix = ""
                else:
                    # The title is the document's title field; each chunk is indexed after it
                    # (as the worker does: rag_core.chunks.indexed_text), by both indexes or
                    # by one ("title-lexical": BM25 only; "title-dense": the embedder only).
                    sections = [Section(body, ())]
                    prefix = f"{chunk_header(title, (), HEADER_CHARS)}\n"
                for chunk in chunk_sections(
                    sections, token_spans, size=config.size, overlap=config.overlap
                ):
                    doc_of.append(n)
                    texts.append(("" if config.header == "title-dense" else prefix) + chunk.text)
                    embedded.append(
                        ("" if config.header == "title-lexical" else prefix) + chunk.text
                    )
            dense = {"title-lexical": "bare", "title-dense": "title"}.get(
                config.header, config.header
            )
            self._chunks[key] = Chunks(
                np.asarray(doc_of, dtype=np.int32),
                texts,
                self._embed(embedded, f"chunks-{config.size}-{config.overlap}-{dense}"),
            )
        return self._chunks[key]

    def lexical(self, config: Config) -> LexicalIndex:
        key = (config.size, config.overlap, config.header, config.lexical_level)
        if key not in self._lexical:
            index = LexicalIndex(self.analyzer)
            if config.lexical_level == "document":
                for n, (title, body) in enumerate(
                    zip(self.corpus.titles, self.corpus.bodies, strict=True)
                ):
                    index.replace_document(
                        str(n), "v", [IndexedChunk(str(n), f"{title}\n\n{body}", {})]
                    )
            else:
                chunks = self.chunks(config)
                by_doc: dict[int, list[IndexedChunk]] = {}
                for c, (doc, text) in enumerate(zip(chunks.doc_of, chunks.texts, strict=True)):
                    by_doc.setdefault(int(doc), []).append(IndexedChunk(str(c), text, {}))
                for doc, items in by_doc.items():
                    index.replace_document(str(doc), "v", items)
            self._lexical[key] = index
        index = self._lexical[key]
        index.k1, index.b = config.k1, config.b
        return index

    def _dense_hits(self, config: Config, q: int) -> list[tuple[int, float]]:
        """The best MAX_DEPTH chunks by meaning, computed once per chunking and query."""
        key = (config.size, config.overlap, config.header, q)
        if key not in self._dense_cache:
            sims = self.chunks(config).vectors @ self.query_vectors[q]
            depth = min(MAX_DEPTH, len(sims))
            top = np.argpartition(-sims, depth - 1)[:depth]
            top = top[np.argsort(-sims[top], kind="stable")]
            self._dense_cache[key] = [(int(c), float(sims[c])) for c in top]
        return self._dense_cache[key]

    def _lexical_hits(self, config: Config, q: int) -> list[tuple[str, float]]:
        key = (
            config.size,
            config.overlap,
            config.header,
            config.lexical_level,
            config.k1,
            config.b,
            config.prf_docs,
            config.prf_terms,
            config.prf_weight,
            q,
        )
        if key not in self._lexical_cache:
            index = self.lexical(config)
            query: str | dict[str, float] = self.query_texts[q]
            if config.prf_docs:
                query = self._expanded(config, index, self.query_texts[q])
            self._lexical_cache[key] = index.search(query, MAX_DEPTH)
        return self._lexical_cache[key]

    def _expanded(self, config: Config, index: LexicalIndex, text: str) -> dict[str, float]:
        """RM3 as Anserini's Rm3Reranker runs it: each of the best ``prf_docs`` hits gives its
        ``prf_terms`` most frequent terms (2 to 20 letters and digits, in at most a tenth of
        the chunks), as shares of the hit, weighted by its BM25 score; the ``prf_terms``
        heaviest, as shares of them, are mixed with the query's terms as shares of it."""
        asked = Counter(self.analyzer.terms(text))
        total = sum(asked.values())
        hits = index.search(text, config.prf_docs)
        if not total or not hits:
            return dict(asked)
        # The IDF of a term in a tenth of the chunks: any more common term is left out.
        live = len(index)
        common = math.log(1.0 + (live - 0.1 * live + 0.5) / (0.1 * live + 0.5))
        model: dict[str, float] = {}
        for hit, score in hits:
            counts = Counter(
                t
                for t in self.analyzer.terms(self._hit_text(config, hit))
                if 2 <= len(t) <= 20 and _FEEDBACK_TERM.fullmatch(t) and index.idf(t) > common
            )
            kept = counts.most_common(config.prf_terms)
            length = sum(c for _, c in kept)
            for term, count in kept:
                model[term] = model.get(term, 0.0) + count / length * score
        feedback = dict(sorted(model.items(), key=lambda p: (-p[1], p[0]))[: config.prf_terms])
        mass = sum(feedback.values()) or 1.0
        # Scaled by the query's length, so that prf_weight 1 is the query as text.
        weights = {t: config.prf_weight * c for t, c in asked.items()}
        for term, value in feedback.items():
            weights[term] = weights.get(term, 0.0) + (1 - config.prf_weight) * total * value / mass
        return weights

    def _hit_text(self, config: Config, hit: str) -> str:
        if config.lexical_level == "document":
            n = int(hit)
            return f"{self.corpus.titles[n]}\n\n{self.corpus.bodies[n]}"
        return self.chunks(config).texts[int(hit)]

    def rank(self, config: Config, q: int) -> list[int]:
        """Documents (indexes) best first for query ``q``."""
        chunks = self.chunks(config)
        dense = self._dense_hits(config, q)[: config.depth]
        lexical_hits = self._lexical_hits(config, q)[: config.depth]
        if config.lexical_level == "document":
            # Both sides as documents: dense documents rank by their best chunk.
            dense_docs = _documents([(int(chunks.doc_of[c]), s) for c, s in dense])
            lexical_docs = [(int(d), s) for d, s in lexical_hits]
            return [d for d, _ in self._fuse(config, dense_docs, lexical_docs)]
        lexical = [(int(c), s) for c, s in lexical_hits]
        fused = self._fuse(config, dense, lexical)
        return _by_document(fused, chunks.doc_of, config.doc_score)

    def _fuse(
        self, config: Config, dense: list[tuple[int, float]], lexical: list[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        # The product's own fusion functions (rag_query.retrieval.fusion), on integer ids.
        if config.fusion == "rrf":
            rankings: Any = {"dense": [i for i, _ in dense], "lexical": [i for i, _ in lexical]}
            return fuse_rankings(rankings, {"dense": config.dense_weight}, config.rrf_k)  # type: ignore[return-value]
        if config.norm in ("minmax", "tmm"):
            scored: Any = {"dense": dense, "lexical": lexical}
            weights = {"dense": config.alpha, "lexical": 1 - config.alpha}
            floors = SCORE_FLOORS if config.norm == "tmm" else {}
            return fuse_scores(scored, weights, floors)  # type: ignore[return-value]
        # z-scores: the lab's own (the product has no such option).
        d, lx = _normalised(dense, "zscore", "dense"), _normalised(lexical, "zscore", "bm25")
        d_floor, l_floor = min(d.values(), default=0.0), min(lx.values(), default=0.0)
        scores = {
            item: config.alpha * d.get(item, d_floor) + (1 - config.alpha) * lx.get(item, l_floor)
            for item in set(d) | set(lx)
        }
        return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))

    def per_query(self, config: Config) -> dict[str, dict[str, float]]:
        """measure -> query id -> value."""
        if config not in self._scores:
            run = []
            for q, query_id in enumerate(self.query_ids):
                ranked = self.rank(config, q)[:100]
                run += [
                    ir_measures.ScoredDoc(query_id, self.corpus.ids[d], float(len(ranked) - i))
                    for i, d in enumerate(ranked)
                ]
            out: dict[str, dict[str, float]] = {str(m): {} for m in MEASURES}
            for metric in ir_measures.iter_calc(MEASURES, self.qrels, run):
                out[str(metric.measure)][metric.query_id] = float(metric.value)
            for values in out.values():  # a query with nothing retrieved scores 0
                for query_id in self.query_ids:
                    values.setdefault(query_id, 0.0)
            self._scores[config] = out
        return self._scores[config]

    def mean(self, config: Config, ids: Iterable[str], measure: str = "nDCG@10") -> float:
        values = self.per_query(config)[measure]
        chosen = list(ids)
        return sum(values[i] for i in chosen) / len(chosen)


def _documents(chunks: list[tuple[int, float]]) -> list[tuple[int, float]]:
    seen: dict[int, float] = {}
    for doc, score in chunks:
        seen.setdefault(doc, score)
    return list(seen.items())


def _by_document(fused: list[tuple[int, float]], doc_of: NDArray[np.int32], how: str) -> list[int]:
    if how == "max":
        return [d for d, _ in _documents([(int(doc_of[c]), s) for c, s in fused])]
    scores: dict[int, list[float]] = {}
    for c, s in fused:
        scores.setdefault(int(doc_of[c]), []).append(s)
    take = 2 if how == "top2" else 1
    totals = {d: sum(sorted(v, reverse=True)[:take]) for d, v in scores.items()}
    return [d for d, _ in sorted(totals.items(), key=lambda p: (-p[1], p[0]))]


def _normalised(ranking: list[tuple[int, float]], how: str, kind: str) -> dict[int, float]:
    """z-scores of one list (minmax and tmm are the product's, rag_query.retrieval.fusion)."""
    if not ranking:
        return {}
    values = np.asarray([s for _, s in ranking], dtype=np.float64)
    scaled = (values - values.mean()) / (values.std() or 1.0)
    return {item: float(v) for (item, _), v in zip(ranking, scaled, strict=True)}


# Ideas in the order they are tried: (name, settings to try on top of the winners so far).
IDEAS: list[tuple[str, Callable[[Config], list[Config]]]] = [
    # How chunks are made and indexed first, then how each index scores, then the fusion.
    (
        "title on every chunk",
        lambda c: [replace(c, header=h) for h in ("title", "title-lexical", "title-dense")],
    ),
    ("chunk size 254 tokens", lambda c: [replace(c, size=254, overlap=40)]),
    (
        "BM25 k1, b",
        lambda c: [
            replace(c, k1=k1, b=b)
            for k1, b in itertools.product((0.9, 1.2, 1.5), (0.4, 0.6, 0.75, 0.9))
        ],
    ),
    ("BM25 over whole documents", lambda c: [replace(c, lexical_level="document")]),
    ("candidate depth", lambda c: [replace(c, depth=d) for d in (50, 200, 300)]),
    (
        "RRF k and weight",
        lambda c: [
            replace(c, fusion="rrf", rrf_k=k, dense_weight=w)
            for k, w in itertools.product((10, 30, 60, 100), (0.5, 0.75, 1.0, 1.5, 2.0))
        ],
    ),
    (
        "convex combination",
        lambda c: [
            replace(c, fusion="convex", alpha=a, norm=n)
            for a, n in itertools.product(
                (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), ("minmax", "zscore", "tmm")
            )
        ],
    ),
    ("document score from chunks", lambda c: [replace(c, doc_score="top2")]),
    (
        "pseudo-relevance feedback (RM3)",
        lambda c: [
            replace(c, prf_docs=d, prf_terms=t, prf_weight=w)
            for d, t, w in itertools.product((5, 10, 20), (10, 20), (0.5, 0.7, 0.9))
        ],
    ),
]


# What the product ships (CHUNK_HEADER_MAX_CHARS 200, FUSION convex, CONVEX_DENSE_SHARE 0.8,
# SEARCH_CANDIDATES 100), and the combinations it was picked from.
SHIPPED = Config(header="title", fusion="convex", alpha=0.8, norm="tmm")
FINALISTS = [
    replace(c, header=header, depth=depth)
    for header, depth in itertools.product(("none", "title", "title-lexical"), (100, 200))
    for c in (
        Config(),
        *(
            Config(fusion="convex", alpha=alpha, norm=norm)
            for alpha, norm in itertools.product((0.5, 0.6, 0.7, 0.8), ("minmax", "tmm"))
        ),
    )
]


def paired_interval(lab: Lab, a: Config, b: Config) -> tuple[float, float, float]:
    """``a``'s mean nDCG@10 gain over ``b`` on all the queries, and its 95% interval by a
    paired bootstrap."""
    first, second = lab.per_query(a)["nDCG@10"], lab.per_query(b)["nDCG@10"]
    return bootstrap([first[q] - second[q] for q in lab.query_ids])


def bootstrap(values: Sequence[float], resamples: int = 2000) -> tuple[float, float, float]:
    """The mean of per-query ``values`` and its 95% interval (the queries resampled with
    replacement ``resamples`` times, a fixed seed)."""
    gains = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(1)
    means = np.sort(rng.choice(gains, size=(resamples, len(gains))).mean(axis=1))
    lo, hi = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return float(gains.mean()), float(lo), float(hi)


def final_selection(lab: Lab) -> dict[str, Any]:
    """The combination picked on each fold among FINALISTS, scored on the other; the one
    picked on all the queries, and its gain over the shipped one (with its interval); and the
    shipped one on each fold and all."""
    folds = [lab.query_ids[0::2], lab.query_ids[1::2]]
    picks = []
    for k in (0, 1):
        best = max(FINALISTS, key=lambda c: lab.mean(c, folds[k]))
        picks.append(
            {
                "chosen": best.changed(),
                "test": lab.mean(best, folds[1 - k]),
                "test_recall": lab.mean(best, folds[1 - k], "R@100"),
            }
        )
    best_all = max(FINALISTS, key=lambda c: lab.mean(c, lab.query_ids))
    return {
        "picks": picks,
        "best_all": best_all.changed(),
        "best_all_score": lab.mean(best_all, lab.query_ids),
        "best_all_against_shipped": paired_interval(lab, best_all, SHIPPED),
        "shipped": SHIPPED.changed(),
        "shipped_folds": [lab.mean(SHIPPED, f) for f in folds],
        "shipped_all": lab.mean(SHIPPED, lab.query_ids),
        "shipped_recall": lab.mean(SHIPPED, lab.query_ids, "R@100"),
    }


def cross_validate(
    lab: Lab,
    ideas: Sequence[tuple[str, Callable[[Config], list[Config]]]],
    start: Config = Config(),
) -> list[dict[str, Any]]:
    folds = [lab.query_ids[0::2], lab.query_ids[1::2]]
    # The path of winners is followed per fold: fold k's path is chosen on fold k only.
    current = [start, start]
    rows = []
    for name, grid in ideas:
        row: dict[str, Any] = {"idea": name, "folds": []}
        test_gains: list[float] = []  # per query, each on the fold it was not picked on
        for k in (0, 1):
            tune, test = folds[k], folds[1 - k]
            base = current[k]
            candidates = [base, *[c for c in grid(base) if c != base]]
            best = max(candidates, key=lambda c: (round(lab.mean(c, tune), 6), c == base))
            after, before = lab.per_query(best)["nDCG@10"], lab.per_query(base)["nDCG@10"]
            test_gains += [after[q] - before[q] for q in test]
            row["folds"].append(
                {
                    "chosen": best.changed(),
                    "tune_gain": lab.mean(best, tune) - lab.mean(base, tune),
                    "test_gain": lab.mean(best, test) - lab.mean(base, test),
                    "test": lab.mean(best, test),
                    "test_recall": lab.mean(best, test, "R@100"),
                    "kept": best != base,
                }
            )
            current[k] = best
        row["test_interval"] = bootstrap(test_gains)[1:]
        rows.append(row)
        print(
            f"{name}: "
            + " | ".join(
                f"fold {k}: {f['chosen'] if f['kept'] else 'not kept'} tune {f['tune_gain']:+.4f}"
                f" test {f['test_gain']:+.4f} ({f['test']:.4f}, R@100 {f['test_recall']:.4f})"
                for k, f in enumerate(row["folds"])
            ),
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="documents (judged ones first)")
    parser.add_argument("--only", default=None, help="idea names to try, separated by semicolons")
    parser.add_argument(
        "--from-shipped",
        action="store_true",
        help="try the ideas on top of the shipped settings, not those before issue 19",
    )
    args = parser.parse_args()
    corpus, queries, qrels = load(args.limit)
    lab = Lab(corpus, queries, qrels)
    base = SHIPPED if args.from_shipped else Config()
    print(
        f"baseline ({len(corpus.ids)} documents, {len(queries)} queries): "
        f"nDCG@10 {lab.mean(base, lab.query_ids):.4f}, "
        f"R@100 {lab.mean(base, lab.query_ids, 'R@100'):.4f}",
        flush=True,
    )
    ideas = list(IDEAS)
    if args.only:
        names = args.only.split(";")
        unknown = set(names) - {name for name, _ in IDEAS}
        if unknown:
            parser.error(f"no such idea: {', '.join(sorted(unknown))}")
        ideas = [idea for idea in IDEAS if idea[0] in names]
    cross_validate(lab, ideas, base)
    print(final_selection(lab), flush=True)
    lab.embedder.close()


if __name__ == "__main__":
    main()
