"""Token-aware chunking that follows the document's structure.

Chunks never cross a section (a heading's body, a PDF page), hold at most ``size`` tokens of
the embedder's own tokenizer, end at the strongest boundary available in their second half
(paragraph, then sentence or line, then word), and start ``overlap`` tokens before the
previous chunk's end, at a word boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag_ingest.parsing import Section

TokenSpans = Callable[[str], list[tuple[int, int]]]

PARAGRAPH, SENTENCE, WORD, INSIDE_WORD = 3, 2, 1, 0
_SENTENCE_END = (".", "!", "?", ":", ";", "\u3002")


@dataclass(frozen=True)
class Chunk:
    text: str
    position: int
    token_count: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None


def _boundary_strength(text: str, spans: Sequence[tuple[int, int]], index: int) -> int:
    """How good a place to cut is just before token ``index``."""
    gap = text[spans[index - 1][1] : spans[index][0]]
    if "\n\n" in gap:
        return PARAGRAPH
    if "\n" in gap:
        return SENTENCE
    if gap and text[spans[index - 1][1] - 1] in _SENTENCE_END:
        return SENTENCE
    return WORD if gap else INSIDE_WORD


def _overlap_start(strength: Sequence[int], earliest: int, end: int) -> int:
    """Where the next chunk starts: a sentence start within the overlap if there is one,
    else a word start; never inside a word."""
    for wanted in (SENTENCE, WORD):
        for index in range(earliest, end):
            if strength[index] >= wanted:
                return index
    return end


def chunk_sections(
    sections: Sequence[Section], token_spans: TokenSpans, *, size: int, overlap: int
) -> list[Chunk]:
    if size < 8:
        raise ValueError("chunk size must be at least 8 tokens")
    if not 0 <= overlap < size // 2:
        raise ValueError("chunk overlap must be below half the chunk size")
    chunks: list[Chunk] = []
    for section in sections:
        text = section.text
        spans = token_spans(text)
        if not spans:
            continue
        if len(spans) <= size:
            chunks.append(
                Chunk(text.strip(), len(chunks), len(spans), section.heading_path, section.page)
            )
            continue
        strength = [PARAGRAPH] + [_boundary_strength(text, spans, i) for i in range(1, len(spans))]
        start = 0
        while start < len(spans):
            end = min(start + size, len(spans))
            if end < len(spans):
                # The strongest boundary in the chunk's second half; the latest such one.
                window = range(start + size // 2, end + 1)
                best = max(window, key=lambda i: (strength[i] if i < len(spans) else 9, i))
                if strength[best] > INSIDE_WORD:
                    end = best
            piece = text[spans[start][0] : spans[end - 1][1]].strip()
            if piece:
                chunks.append(
                    Chunk(piece, len(chunks), end - start, section.heading_path, section.page)
                )
            if end >= len(spans):
                break
            start = _overlap_start(strength, max(end - overlap, start + 1), end)
    return chunks
