"""One parser per format. Each returns sections with their structure or raises ParseError."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from rag_ingest.parsing import ocr
from rag_ingest.parsing.detect import decode_text
from rag_ingest.parsing.model import (
    PageProgress,
    ParsedDocument,
    ParseError,
    ParseLimits,
    Section,
)

# A PDF page is read by OCR when it draws an image and has less text than this (none: a scan;
# a few characters: a scan with a stamp or a page number on it); if OCR reads nothing there,
# its own text is kept. A page with neither (a blank or a drawing) is not read.
OCR_BELOW_CHARS = 20
# Only the opening: a closing run of "#" is stripped in plain Python (see _heading_text), as
# any pattern matching it after a lazy text ("(.+?)[ \t]*#*[ \t]*$") backtracks on a long line.
_ATX_HEADING = re.compile(r"(#{1,6})[ \t]+(.*)")
_FENCE = re.compile(r"^(```|~~~)")
_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\u00a0]+")


def _clean(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def parse_text(data: bytes, charset: str | None = None) -> ParsedDocument:
    text = _clean(decode_text(data, charset))
    return ParsedDocument("text", [Section(text)] if text else [])


def _heading_text(rest: str) -> str:
    """An ATX heading's text without its closing sequence: a run of "#" that is the whole
    text, or follows a space or tab (CommonMark: "# C#" is "C#", "# Setup ##" is "Setup")."""
    text = rest.rstrip(" \t")
    opened = text.rstrip("#")
    if not opened:
        return ""
    if opened != text and opened[-1] in " \t":
        text = opened
    return text.strip()


def parse_markdown(data: bytes, charset: str | None = None) -> ParsedDocument:
    """Sections split at ATX headings (not inside code fences), each with its heading path."""
    text = decode_text(data, charset).replace("\r\n", "\n")
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = _BLANK_RUNS.sub("\n\n", "\n".join(body)).strip()
        if content:
            sections.append(Section(content, tuple(title for _, title in path)))
        body.clear()

    for line in text.split("\n"):
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
        heading = None if in_fence else _ATX_HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = [(lvl, title) for lvl, title in path if lvl < level]
            name = _heading_text(heading.group(2))
            if name:  # an empty heading ("## ##") ends the section above, names none
                path.append((level, name))
            body.append(line)  # the heading stays in its section's text, for retrieval
        else:
            body.append(line)
    flush()
    title = next((s.heading_path[0] for s in sections if s.heading_path), None)
    return ParsedDocument("markdown", sections, title)


_BOILERPLATE_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "svg",
    "canvas",
    "button",
    "select",
    "object",
    "embed",
)
_BOILERPLATE_HINT = re.compile(
    r"(^|[-_ ])"
    r"(nav|menu|footer|header|sidebar|cookie|banner|breadcrumb|share|social|advert|ads?)"
    r"([-_ ]|$)",
    re.I,
)
_BOILERPLATE_ROLES = ("navigation", "banner", "contentinfo", "complementary")
_BLOCK_TAGS = {
    "p",
    "div",
    "li",
    "tr",
    "br",
    "pre",
    "blockquote",
    "table",
    "section",
    "article",
    "ul",
    "ol",
    "dd",
    "dt",
    "figcaption",
}


def parse_html(data: bytes, charset: str | None = None) -> ParsedDocument:
    """Main content only (navigation, scripts, footers... removed), split at h1-h6."""
    from bs4 import BeautifulSoup  # noqa: PLC0415
    from bs4.element import NavigableString, Tag  # noqa: PLC0415

    soup = BeautifulSoup(decode_text(data, charset), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup.find_all(_BOILERPLATE_TAGS):
        tag.decompose()
    for tag in soup.select(",".join(f'[role="{role}"]' for role in _BOILERPLATE_ROLES)):
        tag.decompose()
    for tag in list(soup.find_all(True)):
        if tag.decomposed or not isinstance(tag, Tag) or tag.attrs is None:
            continue
        marker = " ".join([*tag.get_attribute_list("class"), str(tag.get("id") or "")])
        if marker.strip() and _BOILERPLATE_HINT.search(marker):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup

    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []

    def flush() -> None:
        content = _clean("".join(buffer))
        if content:
            sections.append(Section(content, tuple(t for _, t in path)))
        buffer.clear()

    def walk(node: Any) -> Iterator[None]:
        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child).__name__ in ("Comment", "Doctype", "Declaration", "CData"):
                    continue
                buffer.append(str(child))
            elif isinstance(child, Tag):
                name = child.name.lower()
                if re.fullmatch(r"h[1-6]", name):
                    flush()
                    level = int(name[1])
                    heading = child.get_text(" ", strip=True)
                    path[:] = [(lvl, t) for lvl, t in path if lvl < level]
                    if heading:
                        path.append((level, heading))
                        buffer.append(heading + "\n")
                    continue
                if name in _BLOCK_TAGS:
                    buffer.append("\n")
                yield from walk(child)
                if name in _BLOCK_TAGS:
                    buffer.append("\n")
                elif name in ("td", "th"):
                    buffer.append(" ")
        yield None

    for _ in walk(root):
        pass
    flush()
    return ParsedDocument("html", sections, title or None)


def parse_pdf(
    data: bytes, limits: ParseLimits, on_page: PageProgress | None = None
) -> ParsedDocument:
    """The text layer of each page, numbered from 1; pages without one read by OCR."""
    from pypdf import PdfReader  # noqa: PLC0415
    from pypdf.errors import PdfReadError  # noqa: PLC0415

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))
            except Exception:  # any failure to decrypt means we cannot read it
                opened = False
            if not opened:
                raise ParseError("the PDF is encrypted with a password")
        pages = reader.pages
        if len(pages) > limits.max_pdf_pages:
            raise ParseError(
                f"the PDF has {len(pages)} pages; the limit is {limits.max_pdf_pages} "
                "(MAX_PDF_PAGES)"
            )
        sections, scanned = [], {}
        for number, page in enumerate(pages, start=1):
            text = _clean(page.extract_text() or "")
            if limits.ocr is not None and len(text) < OCR_BELOW_CHARS and _has_images(page):
                scanned[number] = text
            elif text:
                sections.append(Section(text, page=number))
        metadata_title = reader.metadata.title if reader.metadata else None
    except ParseError:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
        zipfile.BadZipFile,
    ) as exc:
        raise ParseError(f"not a readable PDF ({type(exc).__name__}: {exc})"[:300]) from None
    if scanned and limits.ocr is not None:
        if len(scanned) > limits.ocr.max_pages:
            raise ParseError(
                f"the PDF has {len(scanned)} scanned pages (an image, no text); OCR reads at "
                f"most {limits.ocr.max_pages} of one document (OCR_MAX_PAGES)"
            )
        read = ocr.pdf_pages(data, list(scanned), limits.ocr, on_page)
        found = {section.page for section in read}
        kept = [Section(text, page=n) for n, text in scanned.items() if text and n not in found]
        sections = sorted([*sections, *read, *kept], key=_page)
    if not sections:
        if limits.ocr is None:
            raise ParseError(
                "the PDF has no text layer (scanned pages are read by OCR, which is off here: "
                "OCR_ENABLED=false)"
            )
        raise ParseError(
            "the PDF has no text, and OCR found none on its scanned pages"
            if scanned
            else "the PDF has no text (no text layer, and no scanned page to read)"
        )
    return ParsedDocument("pdf", sections, str(metadata_title) if metadata_title else None)


def _page(section: Section) -> int:
    return section.page or 0


def _has_images(page: Any) -> bool:
    """Whether a PDF page draws an image of its own (an image XObject in its resources); a
    malformed resource dictionary counts as none."""
    from pypdf.generic import DictionaryObject  # noqa: PLC0415

    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        objects = resources.get("/XObject") if isinstance(resources, DictionaryObject) else None
        objects = objects.get_object() if objects is not None else None
        if not isinstance(objects, DictionaryObject):
            return False
        for entry in objects.values():
            found = entry.get_object() if entry is not None else None
            if isinstance(found, DictionaryObject) and found.get("/Subtype") == "/Image":
                return True
    except Exception:  # a broken reference: no image to read, the page keeps its text
        return False
    return False


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_HEADING_STYLE = re.compile(r"^(heading|berschrift|titre|titolo|ttulo)\s*(\d)$", re.I)


def _read_zip_member(archive: zipfile.ZipFile, name: str, limits: ParseLimits) -> bytes:
    """Read one member, refusing archives whose sizes or ratios look like a zip bomb."""
    infos = archive.infolist()
    declared = sum(info.file_size for info in infos)
    compressed = sum(info.compress_size for info in infos) or 1
    if declared > limits.max_uncompressed_bytes:
        raise ParseError(
            f"the DOCX expands to {declared} bytes; the limit is {limits.max_uncompressed_bytes} "
            "(MAX_UNCOMPRESSED_BYTES)"
        )
    if declared / compressed > limits.max_compression_ratio:
        raise ParseError(
            f"the DOCX expands {declared / compressed:.0f}x when unpacked; the limit is "
            f"{limits.max_compression_ratio:.0f}x (a zip bomb?)"
        )
    with archive.open(name) as member:
        # Declared sizes can lie: never read more than the limit, whatever the header says.
        content = member.read(limits.max_uncompressed_bytes + 1)
    if len(content) > limits.max_uncompressed_bytes:
        raise ParseError("the DOCX expands beyond MAX_UNCOMPRESSED_BYTES")
    return content


def parse_docx(data: bytes, limits: ParseLimits) -> ParsedDocument:
    """Paragraphs and tables of word/document.xml; Heading N styles become the heading path."""
    from defusedxml import ElementTree  # noqa: PLC0415
    from defusedxml.common import DefusedXmlException  # noqa: PLC0415

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            xml = _read_zip_member(archive, "word/document.xml", limits)
        root = ElementTree.fromstring(xml)
    except ParseError:
        raise
    except (
        zipfile.BadZipFile,
        KeyError,
        ElementTree.ParseError,
        DefusedXmlException,
        EOFError,
        OSError,
    ) as exc:
        raise ParseError(f"not a readable DOCX ({type(exc).__name__}: {exc})"[:300]) from None

    body = root.find(f"{_W}body")
    if body is None:
        raise ParseError("not a readable DOCX (no document body)")
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []
    title: str | None = None

    def flush() -> None:
        content = _clean("\n".join(buffer))
        if content:
            sections.append(Section(content, tuple(t for _, t in path)))
        buffer.clear()

    def paragraph_text(paragraph: Any) -> str:
        parts = []
        for node in paragraph.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag in (f"{_W}tab",):
                parts.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
        return "".join(parts)

    for block in body:
        if block.tag == f"{_W}p":
            text = paragraph_text(block)
            style_node = block.find(f"{_W}pPr/{_W}pStyle")
            style = style_node.get(f"{_W}val", "") if style_node is not None else ""
            heading = _HEADING_STYLE.match(style.replace("_", "").replace("-", ""))
            if style.lower() == "title" and text.strip():
                title = title or text.strip()
                buffer.append(text)
            elif heading and text.strip():
                flush()
                level = int(heading.group(2))
                path[:] = [(lvl, t) for lvl, t in path if lvl < level]
                path.append((level, text.strip()))
                buffer.append(text)
            else:
                buffer.append(text)
        elif block.tag == f"{_W}tbl":
            for row in block.iter(f"{_W}tr"):
                cells = [
                    " ".join(paragraph_text(p) for p in cell.iter(f"{_W}p")).strip()
                    for cell in row.iter(f"{_W}tc")
                ]
                buffer.append(" | ".join(cells))
    flush()
    return ParsedDocument("docx", sections, title)


ROWS_PER_SECTION = 50


def parse_csv(data: bytes, charset: str | None = None) -> ParsedDocument:
    """Rows as ``column: value`` lines, in blocks of rows (a block is a section)."""
    text = decode_text(data, charset)
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ParseError(f"not readable CSV ({exc})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ParseError("the CSV has no rows")
    header = [h.strip() or f"column {i + 1}" for i, h in enumerate(rows[0])]
    sections = []
    for start in range(1, max(len(rows), 2), ROWS_PER_SECTION):
        lines = []
        for row in rows[start : start + ROWS_PER_SECTION]:
            pairs = [
                f"{header[i] if i < len(header) else f'column {i + 1}'}: {cell.strip()}"
                for i, cell in enumerate(row)
                if cell.strip()
            ]
            lines.append("; ".join(pairs))
        if lines:
            sections.append(Section("\n".join(lines), (f"rows {start}-{start + len(lines) - 1}",)))
    if not sections:  # a header-only file still says something
        sections.append(Section(", ".join(header)))
    return ParsedDocument("csv", sections)


def _flatten(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    elif value is not None and value != "":
        yield f"{prefix}: {value}" if prefix else str(value)


def parse_json(data: bytes, charset: str | None = None) -> ParsedDocument:
    """Each top-level array element (or object member) as a section of ``path: value`` lines."""
    try:
        value = json.loads(decode_text(data, charset))
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"not valid JSON ({exc})"[:300]) from None
    items: list[tuple[str, Any]]
    if isinstance(value, list):
        items = [(f"[{i}]", item) for i, item in enumerate(value)]
    elif isinstance(value, dict):
        items = [(str(key), item) for key, item in value.items()]
    else:
        items = [("", value)]
    sections = []
    for label, item in items:
        text = "\n".join(_flatten(item, label if not isinstance(value, list) else ""))
        if text.strip():
            sections.append(Section(text, (label,) if label else ()))
    return ParsedDocument("json", sections)
