"""Decide a document's format from its bytes (the name and declared type only break ties)."""

from __future__ import annotations

import codecs
import json
import re
import zipfile
from io import BytesIO
from pathlib import PurePath

from rag_ingest.parsing.model import DocumentFormat, ParseError, UnsupportedFormat

# Possessive throughout: a comment ends at its first "-->" and is never given back, so n
# comments with no <html> after them are tried once, not grouped 2^(n-1) ways (24 took 5 s).
_HTML_START = re.compile(
    rb"\s*+(?:<!--(?:(?!-->).)*+-->\s*+)*+<(?:!doctype\s+html|html|head|body)\b", re.I | re.S
)
_HTML_TAGS = re.compile(rb"<(p|div|h[1-6]|article|main|section|table|ul|ol|br)\b[^>]*>", re.I)
_MARKDOWN_SIGNS = re.compile(r"^(#{1,6} \S|[-*+] \S|\d+\. \S|```|> \S)", re.M)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BOM_NAMES = {"utf-8-sig": "UTF-8", "utf-32": "UTF-32", "utf-16": "UTF-16"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
CSV_SUFFIXES = {".csv", ".tsv"}


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Text from bytes: a BOM or a declared charset wins, otherwise it must be UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                # utf-8-sig counts from after its BOM, the UTF-16 and -32 codecs from before.
                at = exc.start + (len(bom) if encoding == "utf-8-sig" else 0)
                raise ParseError(f"not valid {_BOM_NAMES[encoding]} text (byte {at})") from None
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
    by_bom = next((enc for bom, enc in _BOMS if sample.startswith(bom)), None)
    encoding = by_bom or charset
    if encoding is None:
        return None
    try:
        if by_bom is None:
            # Declared without a BOM, read as bytes.decode reads it (little-endian); the
            # incremental decoder refuses a stream that does not start with one.
            name = codecs.lookup(encoding).name
            encoding = {"utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(name, encoding)
        return codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
    except (LookupError, TypeError, ValueError, AssertionError):
        # Unknown, or not a bytes-to-text codec, or one that fails with errors="replace"
        # anyway ("utf-16" without a BOM, "idna", "punycode": UnicodeError; "hex": an
        # AssertionError): the parser says why, in the pool.
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
ZIP_ENTRY = b"PK\x01\x02"
ZIP_ENTRY_SIZE = 46  # a central directory entry before its name, extra field and comment


def _zip_end(data: bytes) -> int | None:
    """Where a ZIP archive's end record starts; None if it has none."""
    tail_start = max(0, len(data) - ZIP_END_SIZE - ZIP_COMMENT_MAX)
    at = data.rfind(ZIP_END, tail_start)
    return None if at < 0 or len(data) - at < ZIP_END_SIZE else at


def zip_entry_count(data: bytes) -> int | None:
    """How many files a ZIP archive says it holds, read from its end record alone (no
    directory is parsed); None if there is no such record."""
    at = _zip_end(data)
    return None if at is None else _declared_count(data, at)


def _declared_count(data: bytes, end: int) -> int | None:
    """The entry count of the end record at ``end``; None for ZIP64 (0xFFFF: kept elsewhere)."""
    count = int.from_bytes(data[end + 10 : end + 12], "little")
    return None if count == 0xFFFF else count


def declared_zip_names(data: bytes) -> list[str] | None:
    """The names in a ZIP archive's central directory, reading no more entries than its end
    record declares (so no more than MAX_ARCHIVE_ENTRIES once that count is checked); None
    when the directory is not exactly those entries: damaged, or lying about its count."""
    end = _zip_end(data)
    count = None if end is None else _declared_count(data, end)
    if end is None or count is None:  # (one scan of the tail for its end record, not two)
        return None
    size = int.from_bytes(data[end + 12 : end + 16], "little")
    at = end - size  # where zipfile reads it too (whatever the offset says: data may precede)
    if at < 0:
        return None
    names = []
    for _ in range(count):
        if data[at : at + 4] != ZIP_ENTRY or end - at < ZIP_ENTRY_SIZE:
            return None
        name, extra, comment = (
            int.from_bytes(data[at + i : at + i + 2], "little") for i in (28, 30, 32)
        )
        names.append(data[at + ZIP_ENTRY_SIZE : at + ZIP_ENTRY_SIZE + name].decode("cp437"))
        at += ZIP_ENTRY_SIZE + name + extra + comment
    return names if at == end else None


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
    JSON is not parsed, a ZIP's directory is read no further than the count its end record
    declares, once that count is within ``max_archive_entries``);
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
        damaged = UnsupportedFormat("a damaged ZIP archive is not a supported document")
        if sniff:
            # Never the whole directory here: its size, not its declared count, is what
            # zipfile reads (500,000 entries behind an end record saying 1 held the API 2.3 s).
            sniffed = declared_zip_names(data)
            if sniffed is None:
                raise damaged
            names = set(sniffed)
        else:
            try:
                with zipfile.ZipFile(BytesIO(data)) as archive:
                    listed = archive.namelist()
            except (zipfile.BadZipFile, ValueError, NotImplementedError, EOFError, OSError):
                raise damaged from None  # a name flagged UTF-8 that is not: UnicodeDecodeError
            if len(listed) > max_archive_entries:
                raise UnsupportedFormat(
                    f"the archive holds more than {max_archive_entries} files (MAX_ARCHIVE_ENTRIES)"
                )
            names = set(listed)
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
