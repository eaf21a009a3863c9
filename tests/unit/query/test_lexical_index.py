"""The BM25 index: ranking, updates in place, order-independence, compaction."""

from __future__ import annotations

import random

import pytest
from rag_query.retrieval import lexical
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.lexical import IndexedChunk, LexicalIndex

DOCS = {
    "a": ["Cats chase mice in the garden.", "Mice eat cheese."],
    "b": ["Dogs chase cats.", "A dog barks at night."],
    "c": ["Stock markets fell sharply on Monday."],
    "d": ["The garden has roses and tulips."],
}


def _chunks(doc: str) -> list[IndexedChunk]:
    return [IndexedChunk(f"{doc}-{i}", text, {"doc": doc}) for i, text in enumerate(DOCS[doc])]


def _index(order: list[str]) -> LexicalIndex:
    index = LexicalIndex(Analyzer())
    for doc in order:
        index.replace_document(doc, "1", _chunks(doc))
    return index


def test_ranks_by_bm25_with_stems_and_stop_words() -> None:
    index = _index(list(DOCS))
    hits = index.search("the chasing cat", 10)
    assert [chunk for chunk, _ in hits][:2] == ["b-0", "a-0"]  # shorter chunk first
    assert index.search("the and of", 10) == []  # stop words only
    assert index.search("tulip", 10)[0][0] == "d-0"  # stemmed


def test_a_query_of_weighted_terms_scores_as_its_text_does_and_weights_scale() -> None:
    index = _index(list(DOCS))
    terms = Analyzer().terms("cats chase cats")
    as_text = index.search("cats chase cats", 10)
    assert index.search({terms[0]: 2.0, terms[1]: 1.0}, 10) == as_text
    halved = index.search({terms[0]: 1.0, terms[1]: 0.5}, 10)
    assert [c for c, _ in halved] == [c for c, _ in as_text]
    assert [s for _, s in halved] == pytest.approx([s / 2 for _, s in as_text])


def test_same_chunks_in_any_order_rank_identically() -> None:
    orders = [list(DOCS), list(reversed(DOCS))]
    shuffled = list(DOCS)
    random.Random(4).shuffle(shuffled)
    orders.append(shuffled)
    # A document replaced along the way ends like one indexed once.
    churned = _index(list(DOCS))
    churned.replace_document("a", "0", [IndexedChunk("old", "old words about cats", {})])
    churned.replace_document("a", "1", _chunks("a"))
    results = [_index(order).search("cats chase mice garden", 10) for order in orders]
    results.append(churned.search("cats chase mice garden", 10))
    assert all(result == results[0] for result in results)


def test_removed_documents_leave_no_trace_and_compaction_keeps_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lexical, "COMPACT_MIN_DEAD", 2)
    index = _index(list(DOCS))
    index.replace_document("x", "1", [IndexedChunk("x-0", "roses roses roses garden", {})])
    index.remove_document("x")
    index.remove_document("c")  # enough dead slots now: compacted
    assert len(index._ids) == len(index)  # no dead slots left
    never_had_them = _index(["a", "b", "d"])
    for text in ("garden roses", "cats chase mice", "dog barks"):
        assert index.search(text, 10) == never_had_them.search(text, 10)
    assert index.search("stock markets", 10) == []
    assert index.active_tag("c") is None
    assert index.active_tag("a") == "1"


def test_metadata_filter_applies_to_candidates() -> None:
    index = _index(list(DOCS))
    found = index.search("cats", 10, accept=lambda meta: meta["doc"] == "b")
    assert [chunk for chunk, _ in found] == ["b-0"]
