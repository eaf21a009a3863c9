"""What a parser produces: text sections that carry their structure (headings, pages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DocumentFormat = Literal["text", "markdown", "html", "pdf", "docx", "csv", "json"]
FORMATS: tuple[DocumentFormat, ...] = ("text", "markdown", "html", "pdf", "docx", "csv", "json")


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


@dataclass
class ParsedDocument:
    format: DocumentFormat
    sections: list[Section] = field(default_factory=list)
    title: str | None = None

    @property
    def text_length(self) -> int:
        return sum(len(section.text) for section in self.sections)


@dataclass(frozen=True)
class ParseLimits:
    """Guards against hostile files; all configurable (see IngestSettings)."""

    max_uncompressed_bytes: int = 100 * 1024 * 1024
    max_compression_ratio: float = 100.0
    max_pdf_pages: int = 5000
    max_archive_entries: int = 10_000
