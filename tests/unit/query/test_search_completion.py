"""The retriever completes (text, metadata from the chunk store) only the hits it returns, and
takes the next ranked ones when some vanished meanwhile (a document replaced or deleted)."""

from __future__ import annotations

from typing import Any

from rag_config import QuerySettings
from rag_core.catalog import Collection
from rag_core.chunks import StoredChunk
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.lexical import IndexedChunk, LexicalIndex
from rag_query.retrieval.search import Retriever, SearchRequest

# Ten one-chunk documents; the more "cat", the better their lexical rank.
TEXTS = {f"d{i}": " ".join(["cat"] * (10 - i) + ["dog"] * i) for i in range(10)}


class Chunks:
    """The chunk store's `get`, with some chunks gone."""

    def __init__(self, gone: set[str]) -> None:
        self.gone = gone
        self.asked: list[list[str]] = []

    async def get(self, chroma_id: str, ids: list[str], *, vectors: bool) -> list[StoredChunk]:
        self.asked.append(list(ids))
        return [
            StoredChunk(i, i.split("-")[0], "1", 0, TEXTS[i.split("-")[0]], source="s")
            for i in ids
            if i not in self.gone
        ]


class Indexes:
    def __init__(self, index: LexicalIndex) -> None:
        self.index = index

    def get(self, namespace: str, collection: str) -> LexicalIndex:
        return self.index


def retriever(chunks: Chunks) -> Retriever:
    index = LexicalIndex(Analyzer())
    for doc, text in TEXTS.items():
        index.replace_document(doc, "1", [IndexedChunk(f"{doc}-0", text, {})])
    unused: Any = None
    return Retriever(chunks, unused, Indexes(index), unused, QuerySettings(_env_file=None))  # type: ignore[arg-type]


COLLECTION = Collection("c", "m", 3, "chroma-c", 0.0, 1, 10, 10)


async def test_only_the_returned_hits_are_completed() -> None:
    chunks = Chunks(gone=set())
    result = await retriever(chunks).search(
        COLLECTION, SearchRequest("cat", top_k=3, mode="lexical")
    )
    assert [hit.document_id for hit in result.hits] == ["d0", "d1", "d2"]
    assert all(hit.text for hit in result.hits)
    assert chunks.asked == [["d0-0", "d1-0", "d2-0"]]  # not the ten candidates


async def test_hits_that_vanished_are_replaced_by_the_next_ones() -> None:
    chunks = Chunks(gone={"d1-0", "d2-0"})
    result = await retriever(chunks).search(
        COLLECTION, SearchRequest("cat", top_k=3, mode="lexical")
    )
    assert [hit.document_id for hit in result.hits] == ["d0", "d3", "d4"]
    assert chunks.asked == [["d0-0", "d1-0", "d2-0"], ["d3-0", "d4-0"]]
