"""Decide a document's format from its bytes (the name and declared type only break ties)."""

from __future__ import annotations

import codecs
import json
import re
import zipfile
from io import BytesIO
from pathlib import PurePath

from rag_ingest.parsing.model import DocumentFormat, ParseError, UnsupportedFormat

_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_HTML_TAGS = re.compile(rb"<(p|div|h[1-6]|article|main|section|table|ul|ol|br)\b[^>]*>", re.I)
_MARKDOWN_SIGNS = re.compile(r"^(#{1,6} \S|[-*+] \S|\d+\. \S|```|> \S)", re.M)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
CSV_SUFFIXES = {".csv", ".tsv"}


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Text from bytes: a BOM or a declared charset wins, otherwise it must be UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding)
    if charset:
        try:
            return data.decode(charset)
        except LookupError:
            raise ParseError(f"unknown character set {charset[:40]!r}") from None
        except UnicodeDecodeError as exc:
            raise ParseError(f"not valid {charset} text (byte {exc.start})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not valid UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8 or declare its charset (e.g. text/plain; charset=latin-1)"
        ) from None


def declared_charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type, if it has one."""
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


def _head_text(data: bytes, charset: str | None) -> str | None:
    """The start of ``data`` as text, in its BOM's encoding or its declared charset (None
    when neither applies, or the charset is unknown: the parser will say so)."""
    sample = data[:8192]
    encoding = next((enc for bom, enc in _BOMS if sample.startswith(bom)), charset)
    if encoding is None:
        return None
    try:
        return codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
    except (LookupError, TypeError):  # unknown, or not a bytes-to-text codec
        return None


def looks_binary(data: bytes, charset: str | None = None) -> bool:
    """NUL bytes mean binary, unless the text's BOM or declared charset (UTF-16, UTF-32
    without a BOM) makes them part of its characters."""
    text = _head_text(data, charset)
    return "\x00" in text if text is not None else b"\x00" in data[:8192]


# PNG, JPEG, TIFF (little- and big-endian).
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
ZIP_END = b"PK\x05\x06"
ZIP_END_SIZE = 22
ZIP_COMMENT_MAX = 65_535


def zip_entry_count(data: bytes) -> int | None:
    """How many files a ZIP archive says it holds, read from its end record alone (no
    directory is parsed); None if there is no such record."""
    tail_start = max(0, len(data) - ZIP_END_SIZE - ZIP_COMMENT_MAX)
    at = data.rfind(ZIP_END, tail_start)
    if at < 0 or len(data) - at < ZIP_END_SIZE:
        return None
    count = int.from_bytes(data[at + 10 : at + 12], "little")
    return None if count == 0xFFFF else count  # 0xFFFF: ZIP64 keeps the count elsewhere


def detect_format(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    max_archive_entries: int = 10_000,
    sniff: bool = False,
    images: bool = True,
) -> DocumentFormat:
    """The format of ``data``; raises :class:`UnsupportedFormat` with the reason.

    ``sniff``: decide from bounded work only (what the API may do with a request's bytes:
    JSON is not parsed, a ZIP's directory is read only when its end record says it is small);
    what sniffing leaves open, the parser (in the bounded parser pool) decides. ``images``:
    whether PNG, JPEG and TIFF are accepted (they are read by OCR)."""
    if not data or data.isspace():
        raise ParseError("the document is empty")
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(IMAGE_SIGNATURES):
        if not images:
            raise UnsupportedFormat("images are read by OCR, which is off here (OCR_ENABLED=false)")
        return "image"
    if data.startswith(b"PK\x03\x04"):
        entries = zip_entry_count(data)
        if entries is None or entries > max_archive_entries:
            raise UnsupportedFormat(
                f"the archive holds more than {max_archive_entries} files (MAX_ARCHIVE_ENTRIES)"
                if entries is not None
                else "a damaged ZIP archive (or ZIP64) is not a supported document"
            )
        try:
            with zipfile.ZipFile(BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            raise UnsupportedFormat("a damaged ZIP archive is not a supported document") from None
        if "word/document.xml" in names:
            return "docx"
        raise UnsupportedFormat("ZIP archives other than DOCX are not supported")
    charset = declared_charset(content_type)
    if looks_binary(data, charset):
        raise UnsupportedFormat("binary content is not a supported document type")
    suffix = PurePath(filename).suffix.lower() if filename else ""
    declared = (content_type or "").split(";")[0].strip().lower()
    head_text = _head_text(data, charset)  # the signs below are looked for in UTF-8
    head = data[:4096] if head_text is None else head_text[:4096].encode("utf-8")
    if (
        _HTML_START.match(head)
        or declared in ("text/html", "application/xhtml+xml")
        or (suffix in (".html", ".htm") or len(_HTML_TAGS.findall(head)) >= 3)
    ):
        return "html"
    first = head.lstrip()[:1] or data.lstrip()[:1]
    if first in (b"{", b"[") or declared == "application/json" or suffix == ".json":
        if sniff:
            return "json"  # whether it parses is for the parser to find out
        text = data if head_text is None else decode_text(data, charset)
        try:
            json.loads(text)
        except ValueError:
            if declared == "application/json" or suffix == ".json":
                raise ParseError("declared as JSON but it does not parse as JSON") from None
        except RecursionError:  # a property of the document, not a crash to retry
            raise ParseError("the document is nested too deeply to read") from None
        else:
            return "json"
    if suffix in CSV_SUFFIXES or declared in ("text/csv", "text/tab-separated-values"):
        return "csv"
    if suffix in MARKDOWN_SUFFIXES or declared == "text/markdown":
        return "markdown"
    try:
        text = head.decode("utf-8", errors="ignore")
    except UnicodeDecodeError:  # pragma: no cover - errors="ignore" never raises
        text = ""
    if len(_MARKDOWN_SIGNS.findall(text)) >= 2:
        return "markdown"
    return "text"
