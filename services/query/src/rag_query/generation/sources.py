"""The numbered sources an answer cites, chosen to fit the generator's token budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag_query.retrieval.search import Hit

CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Source:
    number: int
    chunk_id: str
    document_id: str
    text: str
    title: str | None = None
    source: str | None = None
    page: int | None = None
    heading: str | None = None
    position: int = 0  # the chunk's place in its document (0: it starts the document)

    def label(self) -> str:
        parts = [p for p in (self.title, self.source) if p]
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.heading:
            parts.append(self.heading)
        return " | ".join(parts) or self.document_id


def select_sources(
    hits: Sequence[Hit], budget_tokens: int, count_tokens: Callable[[str], int]
) -> list[Source]:
    """The best hits, in rank order, while their text fits ``budget_tokens``; the first one
    is always kept (cut to the budget if it alone is too long)."""
    chosen: list[Source] = []
    used = 0
    for hit in hits:
        text = hit.text.strip()
        if not text:
            continue
        tokens = count_tokens(text)
        if chosen and used + tokens > budget_tokens:
            continue
        if not chosen and tokens > budget_tokens:
            text = text[: max(200, len(text) * budget_tokens // max(tokens, 1))]
            tokens = budget_tokens
        used += tokens
        chunk = hit.chunk
        chosen.append(
            Source(
                number=len(chosen) + 1,
                chunk_id=hit.chunk_id,
                document_id=hit.document_id,
                text=text,
                title=chunk.title if chunk else None,
                source=chunk.source if chunk else None,
                page=chunk.page if chunk else None,
                heading=chunk.heading if chunk else None,
                position=chunk.position if chunk else 0,
            )
        )
    return chosen


def quoted(text: str) -> str:
    """Text of a source as it may appear in an answer or a prompt: a ``[2]`` in a document is
    not a citation, so it gets full-width brackets (U+FF3B, U+FF3D), which read the same and
    that nothing takes for one. Only a generator's own markers cite."""
    return CITATION.sub(lambda m: f"\uff3b{m.group(1)}\uff3d", text)


def format_sources(sources: Sequence[Source]) -> str:
    return "\n\n".join(f"[{s.number}] ({quoted(s.label())})\n{quoted(s.text)}" for s in sources)


def cited_numbers(answer: str, sources: Sequence[Source]) -> list[int]:
    """The source numbers an answer cites, in order of first mention, ignoring numbers that
    name no source."""
    valid = {s.number for s in sources}
    seen: dict[int, None] = {}
    for match in CITATION.finditer(answer):
        number = int(match.group(1))
        if number in valid:
            seen.setdefault(number, None)
    return list(seen)
