"""Documents in, structured text out: format detection and one parser per format."""

from __future__ import annotations

from rag_ingest.parsing.detect import declared_charset, detect_format
from rag_ingest.parsing.formats import (
    parse_csv,
    parse_docx,
    parse_html,
    parse_json,
    parse_markdown,
    parse_pdf,
    parse_text,
)
from rag_ingest.parsing.model import (
    FORMATS,
    DocumentFormat,
    OcrLimits,
    PageProgress,
    ParsedDocument,
    ParseError,
    ParseLimits,
    Section,
    UnsupportedFormat,
)
from rag_ingest.parsing.ocr import parse_image


def parse_document(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    limits: ParseLimits | None = None,
    on_page: PageProgress | None = None,
) -> ParsedDocument:
    """Detect the format from the bytes and parse them; raises ParseError with the reason.
    ``on_page``: told before each page OCR reads (pages read, pages to read)."""
    limits = limits or ParseLimits()
    charset = declared_charset(content_type)
    try:
        kind = detect_format(
            data,
            filename=filename,
            content_type=content_type,
            max_archive_entries=limits.max_archive_entries,
            images=limits.ocr is not None,
        )
        if kind == "pdf":
            parsed = parse_pdf(data, limits, on_page)
        elif kind == "image":
            assert limits.ocr is not None  # detect_format accepts images only with OCR on
            parsed = parse_image(data, limits.ocr, on_page)
        elif kind == "docx":
            parsed = parse_docx(data, limits)
        elif kind == "html":
            parsed = parse_html(data, charset)
        elif kind == "json":
            parsed = parse_json(data, charset)
        elif kind == "csv":
            parsed = parse_csv(data, charset)
        elif kind == "markdown":
            parsed = parse_markdown(data, charset)
        else:
            parsed = parse_text(data, charset)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("the document is nested too deeply to read") from None
    except MemoryError:
        raise ParseError(
            "reading the document needs more memory than PARSE_MAX_MEMORY_MB allows"
        ) from None
    except Exception as exc:  # any parser crash is the document's problem, not a retry
        raise ParseError(f"the document cannot be read ({type(exc).__name__})") from None
    if not parsed.sections:
        raise ParseError(f"the {kind} document contains no text")
    return parsed


__all__ = [
    "FORMATS",
    "DocumentFormat",
    "OcrLimits",
    "PageProgress",
    "ParseError",
    "ParseLimits",
    "ParsedDocument",
    "Section",
    "UnsupportedFormat",
    "detect_format",
    "parse_document",
]
