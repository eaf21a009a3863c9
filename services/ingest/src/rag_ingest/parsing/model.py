"""What a parser produces: text sections that carry their structure (headings, pages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# Told before each page OCR reads: (pages read so far, pages to read).
PageProgress = Callable[[int, int], None]

DocumentFormat = Literal["text", "markdown", "html", "pdf", "docx", "csv", "json", "image"]
FORMATS: tuple[DocumentFormat, ...] = (
    "text",
    "markdown",
    "html",
    "pdf",
    "docx",
    "csv",
    "json",
    "image",  # PNG, JPEG, TIFF: read by OCR
)


class ParseError(Exception):
    """The document cannot be read; the message says why in words a user understands."""


class UnsupportedFormat(ParseError):
    """The bytes are not one of the supported formats."""


@dataclass(frozen=True)
class Section:
    """A run of text that chunks never cross: a heading's body, a PDF page, a table block."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    # Read by OCR: Tesseract's mean word confidence on the page (0-100); None: a text layer.
    ocr_confidence: float | None = None


@dataclass
class ParsedDocument:
    format: DocumentFormat
    sections: list[Section] = field(default_factory=list)
    title: str | None = None

    @property
    def text_length(self) -> int:
        return sum(len(section.text) for section in self.sections)


@dataclass(frozen=True)
class OcrLimits:
    """How scanned pages and images are read (see IngestSettings, OCR_*)."""

    languages: str = "eng"  # Tesseract's -l: "eng", "eng+deu"
    max_pages: int = 20  # pages (PDF pages without text, image frames) read of one document
    max_pixels: int = 40_000_000  # of one page: a larger image is refused, a PDF page scaled
    dpi: int = 300  # a PDF page is rendered at this resolution (less when over max_pixels)
    page_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class ParseLimits:
    """Guards against hostile files; all configurable (see IngestSettings)."""

    max_uncompressed_bytes: int = 100 * 1024 * 1024
    max_compression_ratio: float = 100.0
    max_pdf_pages: int = 5000
    max_archive_entries: int = 10_000
    ocr: OcrLimits | None = field(default_factory=OcrLimits)  # None: off (OCR_ENABLED=false)
