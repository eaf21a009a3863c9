"""Extractive answers over our own docs/, in-process: for each question of
bench/docs_questions.jsonl, the product's chunker, hybrid retrieval (int8 MiniLM + BM25, fused
as the query service's defaults say) and source selection, then the offline generator; scored
for citation precision, answer support and whether the answer holds the sentence that says so.

    .venv/bin/python bench/answer_lab.py [--show]

The figures reported in docs/benchmarks.md come from the evaluation API (bench/quality.py);
this is the fast loop for changing the generator.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import inspect
import itertools
import json
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rag_config import IngestSettings, QuerySettings
from rag_core.chunks import StoredChunk, embedded_text, indexed_text
from rag_core.embedding.local import INT8_FILE, LocalEmbedder
from rag_core.embedding.models import model_spec
from rag_core.embedding.wordpiece import token_spans
from rag_core.tokens import count_tokens
from rag_ingest.chunking import chunk_sections
from rag_ingest.parsing import parse_document
from rag_ingest.worker.pipeline import chunk_header
from rag_query.evaluation import metrics
from rag_query.generation import extractive
from rag_query.generation.base import Usage
from rag_query.generation.extractive import ExtractiveGenerator
from rag_query.generation.sources import Source, cited_numbers, select_sources
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.fusion import fuse_rankings, fuse_scores
from rag_query.retrieval.lexical import IndexedChunk, LexicalIndex
from rag_query.retrieval.search import SCORE_FLOORS, Hit

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bench" / "docs_questions.jsonl"
APART = ROOT / "bench" / "docs_questions_apart.jsonl"  # written apart from the generator
# Questions the docs do not answer, written apart from the generator: `kind` in-domain (about
# this product), near (general, on subjects the docs touch) or off-topic (other fields).
UNANSWERABLE = ROOT / "bench" / "docs_questions_unanswerable.jsonl"
CACHE = ROOT / ".dev" / "quality-lab"
MODELS = ROOT / ".dev" / "bench-data" / "models"
EXCLUDED = {"docs/benchmarks.md"}  # its figures change with every run
TOP_K = 10
MODEL = "all-MiniLM-L6-v2-int8"  # the default collection's
_INGEST = IngestSettings(_env_file=None)
CHUNK_SIZE, CHUNK_OVERLAP = _INGEST.chunk_size_tokens, _INGEST.chunk_overlap_tokens
CONTEXT_TOKENS = 3000


def load_questions(path: Path) -> list[dict[str, Any]]:
    """A question set: one JSON object a line: ``id``, ``query``, ``document`` and ``sentence``
    (the file the question was written from and its sentence that answers it), and ``also``:
    other files with a passage that answers it on its own (``document``, ``passage``)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def relevant_documents(case: dict[str, Any]) -> list[str]:
    """Every file that answers the question: its own, then those of ``also``. The other files
    were judged over every file of the corpus without seeing any answer (docs/benchmarks.md).
    None for a question the docs do not answer (bench/docs_questions_unanswerable.jsonl)."""
    if "document" not in case:
        return []
    return [case["document"], *(other["document"] for other in case.get("also", []))]


def expected_answers(case: dict[str, Any]) -> list[str]:
    """Every passage that answers the question: its own sentence, then those of ``also``."""
    if "sentence" not in case:
        return []
    return [case["sentence"], *(other["passage"] for other in case.get("also", []))]


def corpus_files() -> list[str]:
    files = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
    return [f for f in files if f not in EXCLUDED]


@dataclass
class Corpus:
    chunks: list[StoredChunk]
    vectors: NDArray[np.float32]
    index: LexicalIndex


def build(
    embedder: LocalEmbedder, analyzer: Analyzer, header_chars: int, header_embedded: bool
) -> Corpus:
    chunks: list[StoredChunk] = []
    for name in corpus_files():
        parsed = parse_document((ROOT / name).read_bytes(), filename=Path(name).name)
        for chunk in chunk_sections(
            parsed.sections, token_spans, size=CHUNK_SIZE, overlap=CHUNK_OVERLAP
        ):
            chunks.append(
                StoredChunk(
                    id=f"{name}#{chunk.position}",
                    document_id=name,
                    version="v",
                    position=chunk.position,
                    text=chunk.text,
                    heading=" > ".join(chunk.heading_path) or None,
                    header=chunk_header(parsed.title, chunk.heading_path, header_chars),
                    title=parsed.title,
                    header_embedded=header_embedded,
                )
            )
    texts = [embedded_text(c) for c in chunks]
    digest = hashlib.sha256("\x00".join([INT8_FILE, *texts]).encode()).hexdigest()[:20]
    path = CACHE / f"docs-{digest}.npy"  # (keyed by the model file too, as in quality_lab)
    if path.exists():
        vectors = np.load(path)
    else:
        vectors = np.asarray(embedder.embed_sync(texts), dtype=np.float32)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    index = LexicalIndex(analyzer)
    by_doc: dict[str, list[IndexedChunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.document_id, []).append(IndexedChunk(c.id, indexed_text(c), {}))
    for doc, items in by_doc.items():
        index.replace_document(doc, "v", items)
    return Corpus(chunks, vectors, index)


def retrieve(corpus: Corpus, embedder: LocalEmbedder, question: str) -> list[Hit]:
    """Hybrid search as the query service runs it with its default settings."""
    settings = QuerySettings(_env_file=None)
    query = np.asarray(embedder.embed_sync([question])[0], dtype=np.float32)
    convex = settings.fusion == "convex"
    weight = settings.convex_dense_share if convex else settings.dense_weight
    fused = search(corpus, query, question, settings.fusion, weight)
    by_id = {c.id: c for c in corpus.chunks}
    return [Hit(c, by_id[c], score) for c, score in fused[:TOP_K]]


def search(
    corpus: Corpus, query: NDArray[np.float32], question: str, fusion: str, weight: float
) -> list[tuple[str, float]]:
    """Chunk ids best first, fused as the query service fuses: ``convex`` with ``weight`` the
    dense share, or ``rrf`` with ``weight`` the dense ranks' (LEXICAL_WEIGHT the lexical
    ranks', RRF_K the constant)."""
    settings = QuerySettings(_env_file=None)
    depth = settings.search_candidates
    sims = corpus.vectors @ query
    top = np.argsort(-sims, kind="stable")[:depth]
    dense = [(corpus.chunks[i].id, float(sims[i])) for i in top]
    lexical = corpus.index.search(question, depth)
    if fusion == "convex":
        weights = {"dense": weight, "lexical": 1 - weight}
        return fuse_scores({"dense": dense, "lexical": lexical}, weights, SCORE_FLOORS)
    rankings = {"dense": [c for c, _ in dense], "lexical": [c for c, _ in lexical]}
    return fuse_rankings(
        rankings, {"dense": weight, "lexical": settings.lexical_weight}, settings.rrf_k
    )


FUSIONS = [("convex", w) for w in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)] + [("rrf", 1.0)]


def fusion_sweep(bench: Bench) -> list[tuple[str, float, dict[str, float]]]:
    """The fusion settings (chosen on SciFact) on another domain: for each question, the rank
    among the first TOP_K chunks of the first one of its own or an ``also`` file holding the
    start of its sentence or of that file's passage (60 characters of them as letters, digits
    and single spaces, whatever the wrapping and markup). MRR@10, hit@1 and hit@5 per
    setting."""
    texts = [_plain(c.text) for c in bench.corpus.chunks]
    relevant = [
        {
            i
            for i, t in enumerate(texts)
            if bench.corpus.chunks[i].document_id in relevant_documents(c)
            and any(_plain(a)[:60] in t for a in expected_answers(c))
        }
        for c in bench.cases
    ]
    queries = np.asarray(
        bench.embedder.embed_sync([c["query"] for c in bench.cases]), dtype=np.float32
    )
    position = {c.id: i for i, c in enumerate(bench.corpus.chunks)}
    rows = []
    for fusion, weight in FUSIONS:
        firsts = []
        for q, case in enumerate(bench.cases):
            fused = search(bench.corpus, queries[q], case["query"], fusion, weight)[:TOP_K]
            ranks = [r for r, (c, _) in enumerate(fused) if position[c] in relevant[q]]
            firsts.append(ranks[0] if ranks else None)
        rows.append(
            (
                fusion,
                weight,
                {
                    "MRR@10": float(np.mean([1 / (r + 1) if r is not None else 0 for r in firsts])),
                    "hit@1": float(np.mean([r == 0 for r in firsts])),
                    "hit@5": float(np.mean([r is not None and r < 5 for r in firsts])),
                    "found": sum(1 for r in relevant if r),
                },
            )
        )
    return rows


def _plain(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).lower().strip()


def recall(expected: Sequence[str], answer: str, analyzer: Analyzer) -> float | None:
    """The answer's best share of the terms of any expected passage (None if none has any, as
    the evaluation API scores it)."""
    return metrics.against_expected(answer, expected, analyzer)["answer_recall"]


async def answer(generator: ExtractiveGenerator, question: str, sources: list[Source]) -> str:
    pieces = [p async for p in generator.answer(question, sources, [], Usage())]
    return "".join(pieces).strip()


def evaluate(
    generator: Any,
    cases: list[dict[str, Any]],
    prepared: list[list[Source]],
    analyzer: Analyzer,
    *,
    show: bool,
    rows: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, float], float]:
    """The means over the cases, and seconds per answer; ``rows`` gets each case's scores."""
    rows = [] if rows is None else rows
    seconds = 0.0
    for case, sources in zip(cases, prepared, strict=True):
        started = time.perf_counter()
        text = asyncio.run(answer(generator, case["query"], sources))
        seconds += time.perf_counter() - started
        cited = [s.document_id for s in sources if s.number in cited_numbers(text, sources)]
        found = recall(expected_answers(case), text, analyzer)
        own = case.get("document")
        row = {
            "retrieved": any(s.document_id == own for s in sources) if own else None,
            "precision": metrics.citation_precision(
                cited, dict.fromkeys(relevant_documents(case), 1)
            )
            if own
            else None,
            "strict": metrics.citation_precision(cited, {own: 1}) if own else None,
            "support": metrics.answer_support(text, {s.number: s.text for s in sources}, analyzer),
            "recall": found,
            "holds": None if found is None else found >= 0.8,
            "abstained": not cited,
            "words": len(text.split()),
        }
        rows.append(row)
        if show:
            print(f"\n## {case['id']} {case['query']}\nwant: {case['sentence']}\ngot:  {text}")
            print(row)

    def mean(key: str) -> float:
        values = [float(v) for r in rows if (v := r[key]) is not None]
        return sum(values) / len(values) if values else float("nan")

    keys = ("retrieved", "precision", "strict", "support", "recall", "holds", "abstained", "words")
    return {k: mean(k) for k in keys}, seconds / len(rows)


class Bench:
    """The docs/ corpus, the questions and the sources retrieved for each, built once; then
    any generator can be scored on them."""

    def __init__(
        self,
        header_chars: int = 200,
        questions: Path | Sequence[Path] = QUESTIONS,
        *,
        header_embedded: bool = True,
    ) -> None:
        self.analyzer = Analyzer()
        self.embedder = LocalEmbedder(MODELS, variant="int8")
        self.corpus = build(self.embedder, self.analyzer, header_chars, header_embedded)
        self.memo: dict[str, NDArray[np.float32]] = {}
        files = [questions] if isinstance(questions, Path) else list(questions)
        self.cases = [case for path in files for case in load_questions(path)]
        self.prepared = [
            select_sources(
                retrieve(self.corpus, self.embedder, c["query"]), CONTEXT_TOKENS, count_tokens
            )
            for c in self.cases
        ]

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.embedder.embed_sync(missing), strict=True))
        return np.stack([self.memo[t] for t in texts])

    def generator(self, *, by_meaning: bool = True, other: str | None = None) -> Any:
        """The shipped generator, or the ExtractiveGenerator of the file ``other``."""
        if other:
            spec = importlib.util.spec_from_file_location("other_extractive", other)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["other_extractive"] = module
            spec.loader.exec_module(module)
            options: dict[str, Any] = {"idf": self.corpus.index.idf}
            if "embed" in inspect.signature(module.ExtractiveGenerator).parameters:
                options["embed"] = self.embed if by_meaning else None
            return module.ExtractiveGenerator(self.analyzer, **options)
        return ExtractiveGenerator(
            self.analyzer,
            idf=self.corpus.index.idf,
            embed=self.embed if by_meaning else None,
            min_similarity=model_spec(MODEL).min_answer_similarity,
        )

    def score(
        self, generator: Any, *, show: bool = False, rows: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, float], float]:
        return evaluate(generator, self.cases, self.prepared, self.analyzer, show=show, rows=rows)

    def close(self) -> None:
        self.embedder.close()


# The steps of the answer ablation: (label, by meaning, extractive.py constants).
STEPS: list[tuple[str, bool, dict[str, float]]] = [
    ("prose only, each sentence cited (by words)", False, {"FOCUS": 0, "DOCUMENT_PRIOR": 0}),
    ("+ one document (by words)", False, {"FOCUS": 1, "DOCUMENT_PRIOR": 0}),
    (
        "prose only, by meaning, every document",
        True,
        {"FOCUS": 0, "CONTEXT": 0, "DOCUMENT_PRIOR": 0},
    ),
    (
        "+ one document, the best sentence's",
        True,
        {"FOCUS": 1, "CONTEXT": 0, "DOCUMENT_PRIOR": 0},
    ),
    (
        "+ sentences embedded after their title and headings",
        True,
        {"FOCUS": 1, "CONTEXT": 1, "DOCUMENT_PRIOR": 0},
    ),
    ("+ a little of what retrieval found of each document: shipped", True, {"FOCUS": 1}),
]


PRIORS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)  # DOCUMENT_PRIOR values cross_validate_prior tries


def cross_validate_prior(bench: Bench, repeats: int = 50, seed: int = 11) -> dict[str, Any]:
    """DOCUMENT_PRIOR chosen by 2-fold cross-validation, as SciFact's settings are (issue 19):
    the questions are split in two at random, each half picks the value with the best
    citation precision on its own questions (the smaller of equals), and that value is scored
    on the other half; ``repeats`` random splits. Returns the mean of those scores (what the
    choice is worth on questions it was not made on), how often each value was picked, and
    each value's precision over all the questions."""
    per_case: dict[float, list[float | None]] = {}
    saved = extractive.DOCUMENT_PRIOR
    try:
        for value in PRIORS:
            extractive.DOCUMENT_PRIOR = value
            rows: list[dict[str, Any]] = []
            bench.score(bench.generator(), rows=rows)
            per_case[value] = [r["precision"] for r in rows]
    finally:
        extractive.DOCUMENT_PRIOR = saved

    def mean(value: float, cases: Sequence[int]) -> float:
        scores = [p for i in cases if (p := per_case[value][i]) is not None]
        return sum(scores) / len(scores) if scores else 0.0

    rng = random.Random(seed)  # noqa: S311 (a reproducible split, not a secret)
    everyone = range(len(bench.cases))
    tests: list[float] = []
    picks: dict[float, int] = dict.fromkeys(PRIORS, 0)
    for _ in range(repeats):
        order = rng.sample(everyone, len(everyone))
        halves = (order[0::2], order[1::2])
        for tune, test in (halves, halves[::-1]):
            best = max(PRIORS, key=lambda v: (mean(v, tune), -v))
            picks[best] += 1
            tests.append(mean(best, test))
    return {
        "cases": len(bench.cases),
        "repeats": repeats,
        "cross_validated": sum(tests) / len(tests),
        "picks": picks,
        "all": {value: mean(value, everyone) for value in PRIORS},
    }


class _Nearest(ExtractiveGenerator):
    """The shipped generator, answering always, that keeps each question's similarity to its
    nearest sentence scored by meaning (what min_similarity is compared with)."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.nearest: list[float] = []  # one per answer

    async def _by_meaning(self, question: str, pool: list[Any]) -> list[Any]:
        scored = await super()._by_meaning(question, pool)
        self.nearest.append(max(s.similarity for s in scored if s.similarity is not None))
        return scored


THRESHOLDS = tuple(round(0.2 + 0.01 * i, 2) for i in range(21))  # min_similarity, 0.2 to 0.4
KINDS = ("in-domain", "near", "off-topic")


def abstention_sweep(bench: Bench, repeats: int = 50, seed: int = 11) -> dict[str, Any]:
    """Over a bench of the answerable sets and UNANSWERABLE: each question's similarity to
    its nearest sentence; for each threshold, the share of answerable questions still
    answered and their citation precision, and the share of each kind of unanswerable one
    declined; and the rule "the highest threshold at which every answerable question is
    still answered" by 2-fold cross-validation (``repeats`` random splits of each group in
    halves: chosen on one half, scored on the other)."""
    generator = _Nearest(bench.analyzer, idf=bench.corpus.index.idf, embed=bench.embed)
    cases: list[tuple[str, float, float | None]] = []  # kind, nearest, precision
    for case, sources in zip(bench.cases, bench.prepared, strict=True):
        generator.nearest.clear()
        text = asyncio.run(answer(generator, case["query"], sources))
        assert len(generator.nearest) == 1, case["id"]
        cited = [s.document_id for s in sources if s.number in cited_numbers(text, sources)]
        relevant = dict.fromkeys(relevant_documents(case), 1)
        precision = metrics.citation_precision(cited, relevant) if relevant else None
        cases.append((case.get("kind", "answerable"), generator.nearest[0], precision))
    answerable = [(n, p) for kind, n, p in cases if kind == "answerable"]
    unanswerable = [(kind, n) for kind, n, _ in cases if kind != "answerable"]

    def row(threshold: float) -> dict[str, float]:
        kept = [p for n, p in answerable if n >= threshold and p is not None]
        declined = {kind: [n < threshold for k, n in unanswerable if k == kind] for kind in KINDS}
        return {
            "answered": sum(n >= threshold for n, _ in answerable) / len(answerable),
            "precision": sum(kept) / len(kept),
            **{kind: sum(d) / len(d) for kind, d in declined.items()},
            "declined": sum(n < threshold for _, n in unanswerable) / len(unanswerable),
        }

    rng = random.Random(seed)  # noqa: S311 (a reproducible split, not a secret)
    tests: list[tuple[float, float, float]] = []
    for _ in range(repeats):
        a = rng.sample(answerable, len(answerable))
        u = rng.sample(unanswerable, len(unanswerable))
        for tune, test_a, test_u in (
            (a[0::2], a[1::2], u[1::2]),
            (a[1::2], a[0::2], u[0::2]),
        ):
            lowest = min(n for n, _ in tune)
            threshold = max((t for t in THRESHOLDS if t <= lowest), default=0.0)
            tests.append(
                (
                    threshold,
                    sum(n >= threshold for n, _ in test_a) / len(test_a),
                    sum(n < threshold for _, n in test_u) / len(test_u),
                )
            )
    return {
        "answerable": len(answerable),
        "unanswerable": {kind: sum(k == kind for k, _ in unanswerable) for kind in KINDS},
        "lowest_answerable": min(n for n, _ in answerable),
        # Of the answerable questions whose cited files all answer them, and of the others.
        "median_right": float(np.median([n for n, p in answerable if p == 1.0])),
        "median_wrong": float(np.median([n for n, p in answerable if p is not None and p < 1])),
        "highest_off_topic": max(n for k, n in unanswerable if k == "off-topic"),
        "rows": {t: row(t) for t in THRESHOLDS},
        "cross_validated": {
            "repeats": repeats,
            "threshold": sum(t for t, _, _ in tests) / len(tests),
            "answered": sum(a for _, a, _ in tests) / len(tests),
            "worst_answered": min(a for _, a, _ in tests),
            "declined": sum(d for _, _, d in tests) / len(tests),
        },
    }


def ablation(bench: Bench) -> list[tuple[str, dict[str, float], float]]:
    rows = []
    for label, by_meaning, constants in STEPS:
        saved = {name: getattr(extractive, name) for name in constants}
        for name, value in constants.items():
            setattr(extractive, name, type(saved[name])(value))
        try:
            scores, seconds = bench.score(bench.generator(by_meaning=by_meaning))
        finally:
            for name, value in saved.items():
                setattr(extractive, name, value)
        rows.append((label, scores, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--show", action="store_true", help="print every answer")
    parser.add_argument(
        "--questions",
        type=Path,
        default=QUESTIONS,
        help="the question set (bench/docs_questions_apart.jsonl: written apart)",
    )
    parser.add_argument("--header-chars", type=int, default=200, help="CHUNK_HEADER_MAX_CHARS")
    parser.add_argument(
        "--header-for-bm25-only", action="store_true", help="CHUNK_HEADER_EMBEDDED=false"
    )
    parser.add_argument("--lexical-only", action="store_true", help="no sentence embeddings")
    parser.add_argument(
        "--generator-from",
        default=None,
        help="an extractive.py to load instead (another commit's: git show REV:path > FILE)",
    )
    parser.add_argument(
        "--grid",
        default="",
        help="constants of extractive.py to try, every combination: 'A=1,2;B=0.5,0.7'",
    )
    parser.add_argument(
        "--fusion-sweep",
        action="store_true",
        help="passage retrieval of both question sets for each fusion setting, nothing else",
    )
    args = parser.parse_args()
    if args.fusion_sweep:
        bench = Bench(args.header_chars, [QUESTIONS, APART])
        print(
            "| fusion | dense share or weight | MRR@10 | hit@1 | hit@5 |\n|---|---:|---:|---:|---:|"
        )
        for fusion, weight, scores in fusion_sweep(bench):
            print(
                f"| {fusion} | {weight} | {scores['MRR@10']:.4f} | {scores['hit@1']:.3f} | "
                f"{scores['hit@5']:.3f} |"
            )
        print(
            f"({len(bench.cases)} questions, a passage found in the chunks for {scores['found']})"
        )
        bench.close()
        return
    bench = Bench(args.header_chars, args.questions, header_embedded=not args.header_for_bm25_only)
    generator = bench.generator(by_meaning=not args.lexical_only, other=args.generator_from)
    axes = [
        [(name, value) for value in values.split(",")]
        for name, values in (a.split("=", 1) for a in args.grid.split(";") if a)
    ]
    print(
        f"{len(bench.cases)} questions over {len(corpus_files())} files "
        f"({len(bench.corpus.chunks)} chunks)"
    )
    for combination in itertools.product(*axes):
        for name, value in combination:
            setattr(extractive, name, type(getattr(extractive, name))(float(value)))
        scores, seconds = bench.score(generator, show=args.show)
        print(
            " ".join(f"{n}={v}" for n, v in combination) or "defaults",
            "|",
            ", ".join(f"{k} {v:.3f}" for k, v in scores.items()),
            f"| {seconds * 1000:.0f} ms per answer",
            flush=True,
        )
    bench.close()


if __name__ == "__main__":
    main()
