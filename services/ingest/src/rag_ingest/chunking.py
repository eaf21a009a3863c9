"""Token-aware chunking that follows the document's structure.

Chunks never cross a section (a heading's body, a PDF page), hold at most ``size`` tokens of
the embedder's own tokenizer and at most ``max_chars`` characters, end at the strongest
boundary available in their second half (paragraph, then sentence, then line, then clause
after a colon or semicolon, then word), and start ``overlap`` tokens before the previous
chunk's end, at the strongest such start the overlap holds. A line break inside a paragraph
of hard-wrapped text (Markdown, plain text at 80 columns) is a line, not a sentence: only one
after the end of a sentence, or before a list item, heading, quote or table row, starts
something new. In text that breaks lines inside its paragraphs, a colon or semicolon
mid-line is weaker than a line's end, so code and JSON ("limit: int") are cut between their
lines; in text of one line per paragraph it ends a clause as well as a full stop ends a
sentence.

Hostile text is bounded here too: a "word" longer than ``LONGEST_TOKEN_CHARS`` (2 MB without a
space is one unknown token to WordPiece) counts as one token per that many characters, so
no chunk can grow past ``max_chars``; long sections are tokenised a window at a time, and
chunking stops as soon as the document makes more than ``max_chunks`` chunks, instead of
tokenising all of it first.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_ingest.parsing import Section

TokenSpans = Callable[[str], list[tuple[int, int]]]

PARAGRAPH, SENTENCE, LINE, CLAUSE, WORD, INSIDE_WORD = 5, 4, 3, 2, 1, 0
_SENTENCE_END = (".", "!", "?", "\u3002", "\uff01", "\uff1f")
_CLAUSE_END = (":", ";", "\uff1a", "\uff1b")  # in code and JSON, mid-line ("limit: int")
_LINE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")  # inside a paragraph
# A line that starts a block of its own: a list item, a heading, a quote, a table row, a fence.
_BLOCK_START = re.compile(r"[ \t]*(?:[-*+\u2022][ \t]|\d{1,9}[.)][ \t]|#|>|\||```|~~~)")
LONGEST_TOKEN_CHARS = 64
WINDOW_CHARS = 100_000  # a section's text is tokenised this much at a time


class TooManyChunks(Exception):
    """The document makes more chunks than MAX_CHUNKS_PER_DOCUMENT allows."""


@dataclass(frozen=True)
class Chunk:
    text: str
    position: int
    token_count: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    ocr_confidence: float | None = None  # its section's: read by OCR (see Section)


def _boundary_strength(
    text: str, spans: Sequence[tuple[int, int]], index: int, *, lines: bool
) -> int:
    """How good a place to cut is just before token ``index``. ``lines``: the text breaks
    lines inside its paragraphs (code, JSON, hard-wrapped prose), where a line's end is a
    better cut than a mid-line colon or semicolon; in text of one line per paragraph those
    end a clause as well as a full stop ends a sentence."""
    before, after = spans[index - 1][1], spans[index][0]
    gap = text[before:after]
    if "\n\n" in gap:
        return PARAGRAPH
    if gap and text[before - 1] in _SENTENCE_END:
        return SENTENCE
    if "\n" in gap:
        line = text.rfind("\n", before, after) + 1
        return SENTENCE if _BLOCK_START.match(text, line) else LINE
    if gap and text[before - 1] in _CLAUSE_END:
        return CLAUSE if lines else SENTENCE
    return WORD if gap else INSIDE_WORD


def _overlap_start(strength: Sequence[int], earliest: int, end: int) -> int:
    """Where the next chunk starts: a sentence start within the overlap if there is one,
    else a line start, else a clause start, else a word start; never inside a word."""
    for wanted in (SENTENCE, LINE, CLAUSE, WORD):
        for index in range(earliest, end):
            if strength[index] >= wanted:
                return index
    return end


def _bounded(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token spans with every over-long one cut into LONGEST_TOKEN_CHARS pieces."""
    out: list[tuple[int, int]] = []
    for first, end in spans:
        start = first
        while end - start > LONGEST_TOKEN_CHARS:
            out.append((start, start + LONGEST_TOKEN_CHARS))
            start += LONGEST_TOKEN_CHARS
        out.append((start, end))
    return out


def _windows(text: str, limit: int = WINDOW_CHARS) -> list[str]:
    """The text in pieces of at most ``limit`` characters, cut at a paragraph break, else a
    line break, else a space, in the second half of each piece (mid-word only if none)."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > limit:
        cut = -1
        for mark in ("\n\n", "\n", " "):
            cut = text.rfind(mark, start + limit // 2, start + limit)
            if cut > start:
                break
        if cut <= start:
            cut = start + limit
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def chunk_sections(
    sections: Sequence[Section],
    token_spans: TokenSpans,
    *,
    size: int,
    overlap: int,
    max_chars: int = 4000,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Raises TooManyChunks as soon as there are more than ``max_chunks``."""
    if size < 8:
        raise ValueError("chunk size must be at least 8 tokens")
    if not 0 <= overlap < size // 2:
        raise ValueError("chunk overlap must be below half the chunk size")
    if max_chars < 2 * LONGEST_TOKEN_CHARS:
        raise ValueError(f"chunks must be allowed at least {2 * LONGEST_TOKEN_CHARS} characters")
    chunks: list[Chunk] = []
    for section in sections:
        for text in _windows(section.text):
            _chunk_text(text, section, token_spans, chunks, size, overlap, max_chars)
            if max_chunks is not None and len(chunks) > max_chunks:
                raise TooManyChunks(
                    f"the document makes more than {max_chunks} chunks (MAX_CHUNKS_PER_DOCUMENT)"
                )
    return chunks


def _chunk_text(
    text: str,
    section: Section,
    token_spans: TokenSpans,
    chunks: list[Chunk],
    size: int,
    overlap: int,
    max_chars: int,
) -> None:
    spans = _bounded(token_spans(text))
    if not spans:
        return
    whole = text.strip()
    # The whole text, not its first token to its last: characters that make no token (a
    # zero-width space, a combining mark, a control) are characters of the chunk all the same.
    if len(spans) <= size and len(whole) <= max_chars:
        chunks.append(
            Chunk(
                whole,
                len(chunks),
                len(spans),
                section.heading_path,
                section.page,
                section.ocr_confidence,
            )
        )
        return
    ends = [end for _, end in spans]
    lines = _LINE_BREAK.search(text) is not None
    strength = [PARAGRAPH] + [
        _boundary_strength(text, spans, i, lines=lines) for i in range(1, len(spans))
    ]
    start = 0
    while start < len(spans):
        # At most ``size`` tokens and ``max_chars`` characters (every token is shorter).
        end = min(start + size, bisect.bisect_right(ends, spans[start][0] + max_chars))
        if end < len(spans):
            # The strongest boundary in the chunk's second half; the latest such one.
            window = range(start + max(1, (end - start) // 2), end + 1)
            best = max(window, key=lambda i: (strength[i] if i < len(spans) else 9, i))
            if strength[best] > INSIDE_WORD:
                end = best
        piece = text[spans[start][0] : spans[end - 1][1]].strip()
        if piece:
            chunks.append(
                Chunk(
                    piece,
                    len(chunks),
                    end - start,
                    section.heading_path,
                    section.page,
                    section.ocr_confidence,
                )
            )
        if end >= len(spans):
            break
        start = _overlap_start(strength, max(end - overlap, start + 1), end)


def ocr_metadata(chunk: Chunk) -> dict[str, Any]:
    """What a chunk read by OCR carries in its metadata, to be told apart (and filtered on):
    ``ocr: true`` and Tesseract's mean word confidence on its page (0-100). They take the place
    of the caller's own keys of those names."""
    if chunk.ocr_confidence is None:
        return {}
    return {"ocr": True, "ocr_confidence": chunk.ocr_confidence}


def ocr_confidence(metadata: Mapping[str, Any]) -> float | None:
    """The OCR confidence a stored chunk's metadata carries (None: not read by OCR)."""
    value = metadata.get("ocr_confidence")
    return float(value) if metadata.get("ocr") is True and isinstance(value, int | float) else None
