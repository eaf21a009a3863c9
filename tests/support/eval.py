"""The evaluation data (BEIR SciFact) for quality tests: found through RAG_EVAL_DIR, by
default ../shared/eval from the project root; tests that need it skip when it is absent."""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD_HINT = (
    "BEIR SciFact is not at {path}: download the public BEIR 'scifact' dataset (corpus.jsonl, "
    "queries.jsonl, qrels/test.tsv) into that folder, or point RAG_EVAL_DIR at it"
)


def eval_dir() -> Path:
    return Path(os.environ.get("RAG_EVAL_DIR", ROOT.parent / "shared" / "eval"))


@dataclass(frozen=True)
class SciFact:
    corpus: dict[str, str]  # id -> title + text
    queries: dict[str, str]  # test queries only
    qrels: list[tuple[str, str, int]]  # query id, doc id, relevance
    titles: dict[str, str]  # id -> title
    texts: dict[str, str]  # id -> text (without its title)

    def sample(self, size: int, seed: int = 13) -> dict[str, str]:
        """Every judged document plus random others, ``size`` in all (a fixed choice)."""
        judged = {doc for _, doc, _ in self.qrels}
        others = sorted(set(self.corpus) - judged)
        extra = random.Random(seed).sample(others, max(0, size - len(judged)))
        return {doc: self.corpus[doc] for doc in sorted(judged | set(extra))}


def load_scifact() -> SciFact:
    folder = eval_dir() / "scifact"
    if not (folder / "corpus.jsonl").exists():
        pytest.skip(DOWNLOAD_HINT.format(path=folder))
    corpus, titles, texts = {}, {}, {}
    with (folder / "corpus.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            corpus[row["_id"]] = f"{row['title']}\n\n{row['text']}".strip()
            titles[row["_id"]], texts[row["_id"]] = row["title"].strip(), row["text"].strip()
    with (folder / "qrels" / "test.tsv").open() as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    qrels = [(q, d, int(score)) for q, d, score in rows]
    wanted = {q for q, _, _ in qrels}
    queries = {}
    with (folder / "queries.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            if row["_id"] in wanted:
                queries[row["_id"]] = row["text"]
    return SciFact(corpus, queries, qrels, titles, texts)


# A tiny BEIR-format set for the evaluation API and `rag eval` tests.
MEDICAL_CORPUS = {
    "d1": "Aspirin reduces the risk of heart attacks in adults over fifty.",
    "d2": "Vitamin D deficiency is common in northern countries during winter.",
    "d3": "Regular exercise lowers blood pressure in most patients.",
    "d4": "Coffee consumption is not linked to higher cancer risk.",
    "d5": "Sleep deprivation impairs memory consolidation.",
}
MEDICAL_QUERIES = [
    {"_id": "q1", "text": "Does aspirin prevent heart attacks?"},
    {"_id": "q2", "text": "Is vitamin D deficiency common in winter?"},
    {"_id": "q3", "text": "What does sleep deprivation do to memory?"},
    {"_id": "q9", "text": "A query without judgements is skipped."},
]
MEDICAL_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td5\t1\n"
