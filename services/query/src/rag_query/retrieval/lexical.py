"""BM25 over one collection's active chunks, updated in place as documents change.

Postings are append-only arrays per term (slot numbers and term frequencies) scored with
numpy; a removed chunk's slot is only marked dead, and the arrays are compacted once dead
slots pass a quarter of all. Scores depend only on the set of chunks indexed, never on the
order they arrived in (lengths are summed as integers, terms scored in sorted order, ties
broken by chunk id), so two replicas that applied the same changes rank identically.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_query.retrieval.analyzer import Analyzer

COMPACT_MIN_DEAD = 1000


@dataclass(frozen=True)
class IndexedChunk:
    chunk_id: str
    text: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class AnalyzedChunk:
    chunk_id: str
    metadata: Mapping[str, Any]
    counts: Counter[str]
    length: int


@dataclass
class _Postings:
    slots: array[int] = field(default_factory=lambda: array("i"))
    tfs: array[float] = field(default_factory=lambda: array("f"))


class LexicalIndex:
    def __init__(self, analyzer: Analyzer, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
        self._postings: dict[str, _Postings] = {}
        self._df: Counter[str] = Counter()
        self._ids: list[str] = []
        self._metadata: list[Mapping[str, Any]] = []
        self._terms: list[tuple[str, ...]] = []
        self._lengths = array("f")
        self._alive = bytearray()
        self._total_length = 0
        self._live = 0
        self.documents: dict[str, tuple[str, list[int]]] = {}  # id -> (active tag, slots)

    def __len__(self) -> int:
        return self._live

    def idf(self, term: str) -> float:
        """BM25's inverse document frequency of an (analysed) term in this collection."""
        df = self._df.get(term, 0)
        return math.log(1.0 + (self._live - df + 0.5) / (df + 0.5)) if self._live else 0.0

    def active_tag(self, document_id: str) -> str | None:
        entry = self.documents.get(document_id)
        return entry[0] if entry else None

    def analyze(self, chunks: Iterable[IndexedChunk]) -> list[AnalyzedChunk]:
        """The CPU-heavy half of indexing, safe to run off the event loop."""
        analyzed = []
        for chunk in chunks:
            terms = self.analyzer.terms(chunk.text)
            analyzed.append(
                AnalyzedChunk(chunk.chunk_id, chunk.metadata, Counter(terms), len(terms))
            )
        return analyzed

    def replace_document(self, document_id: str, tag: str, chunks: Iterable[IndexedChunk]) -> None:
        """Make ``chunks`` (of version ``tag``) the document's only chunks."""
        self.apply_document(document_id, tag, self.analyze(chunks))

    def apply_document(self, document_id: str, tag: str, chunks: list[AnalyzedChunk]) -> None:
        self.remove_document(document_id)
        slots = []
        for chunk in chunks:
            counts = chunk.counts
            slot = len(self._ids)
            self._ids.append(chunk.chunk_id)
            self._metadata.append(chunk.metadata)
            self._terms.append(tuple(counts))
            self._lengths.append(chunk.length)
            self._alive.append(1)
            self._total_length += chunk.length
            self._live += 1
            for term, count in counts.items():
                postings = self._postings.get(term)
                if postings is None:
                    postings = self._postings[term] = _Postings()
                postings.slots.append(slot)
                postings.tfs.append(count)
                self._df[term] += 1
            slots.append(slot)
        self.documents[document_id] = (tag, slots)

    def remove_document(self, document_id: str) -> None:
        entry = self.documents.pop(document_id, None)
        if entry is None:
            return
        for slot in entry[1]:
            self._alive[slot] = 0
            self._total_length -= int(self._lengths[slot])
            self._live -= 1
            for term in self._terms[slot]:
                self._df[term] -= 1
                if not self._df[term]:
                    del self._df[term]
        dead = len(self._ids) - self._live
        if dead >= COMPACT_MIN_DEAD and dead * 4 >= len(self._ids):
            self._compact()

    def search(
        self,
        query: str | Mapping[str, float],
        limit: int,
        accept: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> list[tuple[str, float]]:
        """The best ``limit`` chunks for ``query`` as (chunk id, BM25 score), best first;
        ``accept`` filters on chunk metadata. ``query``: text, or analysed terms and their
        weights, none negative (a text counts each term as often as it holds it)."""
        if not self._live:
            return []
        wanted = Counter(self.analyzer.terms(query)) if isinstance(query, str) else query
        scores = np.zeros(len(self._ids), dtype=np.float64)
        lengths = np.frombuffer(self._lengths, dtype=np.float32)
        average = self._total_length / self._live
        touched = False
        for term in sorted(wanted):
            postings = self._postings.get(term)
            df = self._df.get(term, 0)
            if postings is None or not df:
                continue
            touched = True
            slots = np.frombuffer(postings.slots, dtype=np.int32)
            tfs = np.frombuffer(postings.tfs, dtype=np.float32).astype(np.float64)
            idf = math.log(1.0 + (self._live - df + 0.5) / (df + 0.5))
            norm = self.k1 * (1.0 - self.b + self.b * lengths[slots] / average)
            scores[slots] += wanted[term] * idf * tfs * (self.k1 + 1.0) / (tfs + norm)
        if not touched:
            return []
        alive = np.frombuffer(self._alive, dtype=np.uint8).astype(bool)
        candidates = np.flatnonzero((scores > 0) & alive)
        if accept is not None:
            candidates = np.array(
                [s for s in candidates if accept(self._metadata[s])], dtype=np.int64
            )
        if not len(candidates):
            return []
        if len(candidates) > limit:
            # The best ``limit`` by score, plus everything tied with the last of them.
            cut = np.partition(scores[candidates], len(candidates) - limit)[len(candidates) - limit]
            candidates = candidates[scores[candidates] >= cut]
        # Best first; equal scores by chunk id, so every replica orders them alike.
        ranked = sorted(candidates.tolist(), key=lambda s: (-scores[s], self._ids[s]))
        return [(self._ids[s], float(scores[s])) for s in ranked[:limit]]

    def _compact(self) -> None:
        """Drop dead slots: renumber the live ones and rebuild the postings from their terms."""
        keep = [slot for slot in range(len(self._ids)) if self._alive[slot]]
        new_slot = {old: new for new, old in enumerate(keep)}
        postings: dict[str, _Postings] = {}
        for old, new in new_slot.items():
            for term in self._terms[old]:
                postings.setdefault(term, _Postings()).slots.append(new)
        for term, entry in self._postings.items():
            if term not in postings:
                continue
            tf_of = {
                new_slot[s]: tf
                for s, tf in zip(entry.slots, entry.tfs, strict=True)
                if self._alive[s]
            }
            postings[term].tfs.extend(tf_of[s] for s in postings[term].slots)
        self._postings = postings
        self._ids = [self._ids[s] for s in keep]
        self._metadata = [self._metadata[s] for s in keep]
        self._terms = [self._terms[s] for s in keep]
        self._lengths = array("f", (self._lengths[s] for s in keep))
        self._alive = bytearray([1]) * len(keep)
        self.documents = {
            doc: (tag, [new_slot[s] for s in slots]) for doc, (tag, slots) in self.documents.items()
        }
