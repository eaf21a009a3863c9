"""Parse and chunk one document in a single call, meant for the parser pool.

Both steps cost what the input makes them cost (25 MB of text is millions of tokens), so both
run in a parser process, whose memory (PARSE_MAX_MEMORY_MB) and time (PARSE_TIMEOUT_SECONDS)
are bounded and which can be killed, never in the worker's own process, which serves the
heartbeat, the reconciler and every other job. Only the chunks come back, not the text.

Every embedder RAG Engine has counts tokens with the all-MiniLM-L6-v2 WordPiece tokenizer
(the hosted ones too: see rag_core.embedding.hosted), so a parser process loads that one.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag_core.embedding.wordpiece import counting_tokenizer, token_spans

from rag_ingest.chunking import Chunk, chunk_sections
from rag_ingest.parsing import DocumentFormat, PageProgress, ParseLimits, parse_document


@dataclass(frozen=True)
class ChunkLimits:
    size: int  # CHUNK_SIZE_TOKENS
    overlap: int  # CHUNK_OVERLAP_TOKENS
    max_chars: int  # CHUNK_MAX_CHARS
    max_chunks: int  # MAX_CHUNKS_PER_DOCUMENT


@dataclass(frozen=True)
class PreparedDocument:
    format: DocumentFormat
    title: str | None
    pages: int | None  # for PDFs and images
    chunks: list[Chunk]
    parse_seconds: float
    chunk_seconds: float


def _page_writer(path: str) -> PageProgress:
    def write(done: int, total: int) -> None:
        Path(path).write_text(f"{done} {total}")

    return write


def read_progress(path: Path) -> tuple[int, int] | None:
    """What ``prepare_document`` last wrote to ``path``: (pages read, pages to read)."""
    try:
        done, total = path.read_text().split()
        return int(done), int(total)
    except (OSError, ValueError):
        return None


def warm_up() -> None:
    """Load what preparing needs (run once in each new parser process)."""
    counting_tokenizer()


def prepare_document(
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    limits: ParseLimits,
    chunking: ChunkLimits,
    progress_path: str | None = None,
) -> PreparedDocument:
    """Raises ParseError (unreadable) or TooManyChunks, each with a reason for the user.
    ``progress_path``: a file where the pages OCR has read so far are written, "read total"
    (the worker reads it while it waits: see ``read_progress``)."""
    started = time.perf_counter()
    # What the parse writes (tesseract's image and its output) goes in the job's directory,
    # which the worker removes, even when this process is killed half-way.
    tempfile.tempdir = str(Path(progress_path).parent) if progress_path else None
    try:
        parsed = parse_document(
            data,
            filename=filename,
            content_type=content_type,
            limits=limits,
            on_page=_page_writer(progress_path) if progress_path else None,
        )
    finally:
        tempfile.tempdir = None
    parsed_at = time.perf_counter()
    chunks = chunk_sections(
        parsed.sections,
        token_spans,
        size=chunking.size,
        overlap=chunking.overlap,
        max_chars=chunking.max_chars,
        max_chunks=chunking.max_chunks,
    )
    paged = parsed.format in ("pdf", "image")
    pages = max((s.page or 0) for s in parsed.sections) if paged else None
    return PreparedDocument(
        format=parsed.format,
        title=parsed.title,
        pages=pages,
        chunks=chunks,
        parse_seconds=parsed_at - started,
        chunk_seconds=time.perf_counter() - parsed_at,
    )
