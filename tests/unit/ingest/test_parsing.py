"""Every supported format parses with its structure; hostile or broken files fail with a reason."""

from __future__ import annotations

import codecs
import contextlib
import json
import subprocess
import sys

import pytest
from rag_ingest.parsing import (
    ParseError,
    ParseLimits,
    UnsupportedFormat,
    detect_format,
    parse_document,
)

from tests.support.documents import make_docx, make_docx_bomb, make_pdf

MARKDOWN = b"""# Guide

Intro paragraph.

## Install

Run the installer.

```bash
# not a heading, a shell comment
make setup
```

### Linux

Use apt.

## Use

Ask questions.
"""

HTML = b"""<!doctype html><html><head><title>Pricing</title><script>var x = 1;</script>
<style>p{color:red}</style></head><body>
<nav class="site-nav"><a href="/">Home</a> <a href="/about">About us</a></nav>
<header><h1>Site header</h1></header>
<main><h1>Plans</h1><p>We have two plans.</p>
<h2>Free</h2><p>Costs nothing.</p><div class="cookie-banner">Accept cookies?</div>
<h2>Pro</h2><p>Costs 10 euros.</p><table><tr><td>seats</td><td>5</td></tr></table></main>
<footer>Copyright 2026</footer></body></html>"""


def test_markdown_sections_follow_headings_and_ignore_code_fences() -> None:
    parsed = parse_document(MARKDOWN, filename="guide.md")
    assert parsed.format == "markdown"
    assert parsed.title == "Guide"
    paths = [section.heading_path for section in parsed.sections]
    assert paths == [
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Guide", "Use"),
    ]
    assert "# not a heading, a shell comment" in parsed.sections[1].text


def test_markdown_is_recognised_by_content_without_a_name() -> None:
    assert detect_format(MARKDOWN) == "markdown"


def test_html_keeps_main_content_and_strips_boilerplate() -> None:
    parsed = parse_document(HTML)
    assert parsed.format == "html"
    assert parsed.title == "Pricing"
    text = "\n".join(section.text for section in parsed.sections)
    for boilerplate in ("var x", "color:red", "About us", "Site header", "Copyright", "cookies"):
        assert boilerplate not in text
    assert [s.heading_path for s in parsed.sections] == [
        ("Plans",),
        ("Plans", "Free"),
        ("Plans", "Pro"),
    ]
    assert "seats 5" in parsed.sections[-1].text


def test_pdf_pages_are_numbered() -> None:
    data = make_pdf(["First page about cells.", "Second page about genes."], title="Biology")
    parsed = parse_document(data, filename="paper.bin")  # the name does not matter
    assert parsed.format == "pdf"
    assert parsed.title == "Biology"
    assert [(s.page, s.text) for s in parsed.sections] == [
        (1, "First page about cells."),
        (2, "Second page about genes."),
    ]


def test_docx_headings_paragraphs_and_tables() -> None:
    data = make_docx(
        [
            ("Title", "Handbook"),
            ("Heading 1", "Leave"),
            ("", "Staff get 25 days."),
            ("Heading 2", "Sick leave"),
            ("", "Tell your manager."),
        ],
        table=[["Role", "Days"], ["Engineer", "25"]],
    )
    parsed = parse_document(data, filename="handbook.pdf")  # content wins over the name
    assert parsed.format == "docx"
    assert parsed.title == "Handbook"
    assert [s.heading_path for s in parsed.sections] == [(), ("Leave",), ("Leave", "Sick leave")]
    assert "Staff get 25 days." in parsed.sections[1].text
    assert "Engineer | 25" in parsed.sections[2].text


def test_csv_rows_become_column_value_lines() -> None:
    data = b"name;city\nAda;London\nGrace;New York\n"
    parsed = parse_document(data, filename="people.csv")
    assert parsed.format == "csv"
    assert parsed.sections[0].text == "name: Ada; city: London\nname: Grace; city: New York"


def test_json_is_flattened_per_item() -> None:
    data = json.dumps([{"q": "What is RAG?", "tags": ["ai", "search"]}, {"q": "Why?"}]).encode()
    parsed = parse_document(data)
    assert parsed.format == "json"
    assert parsed.sections[0].text == "q: What is RAG?\ntags[0]: ai\ntags[1]: search"
    assert parsed.sections[1].text == "q: Why?"


def test_plain_text_and_declared_charsets() -> None:
    assert (
        parse_document(b"Hello   world.\r\n\r\n\r\nBye.").sections[0].text == "Hello world.\n\nBye."
    )
    latin1 = "Caf\u00e9 cr\u00e8me".encode("latin-1")
    parsed = parse_document(latin1, content_type="text/plain; charset=latin-1")
    assert parsed.sections[0].text == "Caf\u00e9 cr\u00e8me"
    utf16 = "Bonjour".encode("utf-16")  # with its byte-order mark
    assert parse_document(utf16).sections[0].text == "Bonjour"


@pytest.mark.parametrize("charset", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_a_declared_wide_charset_without_a_byte_order_mark_is_text_not_binary(
    charset: str,
) -> None:
    content_type = f"text/plain; charset={charset}"
    text = "Cr\u00e8me br\u00fbl\u00e9e.\n\n# Not a heading in a .txt? It is markdown-like."
    assert detect_format(text.encode(charset), content_type=content_type) == "text"
    parsed = parse_document(text.encode(charset), content_type=content_type)
    assert parsed.sections[0].text == text
    page = "<html><body><h1>Menu</h1><p>Cr\u00e8me</p></body></html>"
    assert detect_format(page.encode(charset), content_type=f"text/html; charset={charset}") == (
        "html"
    )
    assert detect_format(page.encode(charset), content_type=content_type) == "html"
    data = '[{"dish": "cr\u00e8me"}]'.encode(charset)
    assert parse_document(data, content_type=content_type).sections[0].text == "dish: cr\u00e8me"


def test_json_nested_too_deeply_is_a_reason_wherever_it_is_read() -> None:
    deep = b"[" * 1_000_000 + b"]" * 1_000_000
    for content_type in (None, "application/json"):
        with pytest.raises(ParseError, match="nested too deeply"):
            detect_format(deep, content_type=content_type)


@pytest.mark.parametrize(
    ("data", "kwargs", "reason"),
    [
        (b"", {}, "empty"),
        (b"   \n\t ", {}, "empty"),
        ("caf\u00e9".encode("latin-1"), {}, "not valid UTF-8 text (invalid byte 0xe9 at offset 3)"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", {}, "binary content"),
        (b"PK\x03\x04not really a zip", {}, "damaged ZIP"),
        (b"{not json", {"filename": "x.json"}, "does not parse as JSON"),
        (b"%PDF-1.7\n garbage garbage", {}, "not a readable PDF"),
    ],
)
def test_bad_input_fails_with_a_reason(data: bytes, kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(ParseError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_document(data, **kwargs)


def test_binary_and_other_archives_are_unsupported_formats() -> None:
    with pytest.raises(UnsupportedFormat):
        detect_format(b"\x00\x01\x02\x03")
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(UnsupportedFormat, match="ZIP archives other than DOCX"):
        detect_format(buffer.getvalue())


def test_encrypted_pdf_is_refused_with_its_reason() -> None:
    with pytest.raises(ParseError, match="encrypted with a password"):
        parse_document(make_pdf(["secret"], password="pw"))


def test_truncated_pdf_is_refused() -> None:
    data = make_pdf(["Some text that will be cut off."])
    with pytest.raises(ParseError):
        parse_document(data[: len(data) // 3])


def test_docx_zip_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = make_docx_bomb()
    assert len(bomb) < 1024 * 1024  # tiny on the wire
    with pytest.raises(ParseError, match="expands"):
        parse_document(bomb, limits=ParseLimits(max_uncompressed_bytes=50 * 1024 * 1024))


def test_pdf_page_limit() -> None:
    data = make_pdf(["one", "two", "three"])
    with pytest.raises(ParseError, match="the limit is 2"):
        parse_document(data, limits=ParseLimits(max_pdf_pages=2))


def test_a_pdf_without_text_says_so() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    with pytest.raises(ParseError, match="no text layer, and no scanned page"):
        parse_document(bytes(pdf.output()))
    with pytest.raises(ParseError, match="no text layer"):
        parse_document(bytes(pdf.output()), limits=ParseLimits(ocr=None))


def test_pathological_nesting_fails_with_a_reason_not_a_crash() -> None:
    with pytest.raises(ParseError):
        parse_document(b"[" * 100_000 + b"]" * 100_000)


def _finishes(code: str, *, deadline: float = 20.0) -> str:
    """What ``code`` prints, run in a fresh interpreter that is killed after ``deadline``
    seconds: a regular expression that backtracks exponentially cannot be interrupted in the
    process that runs it. The inputs below take milliseconds, or days on a backtracking
    pattern; the deadline is generous so that a busy machine never fails the test."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=deadline,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {deadline:.0f} s (catastrophic backtracking)")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_leading_html_comments_are_sniffed_in_linear_time() -> None:
    """``(<!--.*?-->\\s*)*`` with re.S grouped n comments 2^(n-1) ways when no <html>
    followed: 24 froze the ingest API's event loop for 5 s, and the worker's for 13 s."""
    out = _finishes(
        "from rag_ingest.parsing import detect_format\n"
        "data = b'<!---->' * 64 + b'\\nplain text\\n'\n"
        "print(detect_format(data, filename='notes.txt', sniff=True),"
        " detect_format(data, filename='notes.txt'))\n"
    )
    assert out == "text text"
    # Comments before the start of a page still make it HTML.
    page = b"<!-- built --> \n<!-- a -- b --><!---->\n<!DOCTYPE html><title>T</title>"
    assert detect_format(page, sniff=True) == "html"
    assert detect_format(b"<!-- x --><html lang=en><p>y", filename="page.txt") == "html"
    assert detect_format(b"<!-- x --> <htmlish> notes", filename="notes.txt") == "text"


def test_a_long_markdown_heading_line_parses_in_linear_time() -> None:
    """``(.+?)[ \\t]*#*[ \\t]*$`` is cubic in a heading line's blanks: "# a", 2,000 spaces
    and "x" took 11 s, and 5,000 reached the parse timeout."""
    out = _finishes(
        "from rag_ingest.parsing import parse_document\n"
        "line = '# a' + ' ' * 200_000 + 'x' + ' ' * 200_000 + '#' * 50_000\n"
        "parsed = parse_document((line + '\\n\\nbody\\n').encode(), filename='h.md')\n"
        "[heading] = parsed.sections[0].heading_path\n"
        "print(len(heading), heading[:1], heading[-1:])\n"
    )
    assert out == "200002 a x"


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("# Install ##", "Install"),
        ("## Install #\t ", "Install"),
        ("# Install\t#", "Install"),
        ("# C#", "C#"),  # a closing run counts only after a blank
        ("# Install#", "Install#"),
        ("# #hashtag", "#hashtag"),
        ("#  Spaced   out  ", "Spaced   out"),
        ("### Use ### more", "Use ### more"),
    ],
)
def test_markdown_headings_lose_their_closing_sequence(line: str, heading: str) -> None:
    parsed = parse_document(f"{line}\n\nBody text.\n".encode(), filename="doc.md")
    assert parsed.sections[0].heading_path == (heading,)


def test_a_markdown_heading_of_closing_hashes_alone_is_empty() -> None:
    """``## ##`` is an empty heading (CommonMark): it ends the section above, names none."""
    parsed = parse_document(b"# Guide\n\nIntro.\n\n## ##\n\nLoose text.\n", filename="doc.md")
    assert [s.heading_path for s in parsed.sections] == [("Guide",), ("Guide",)]
    assert parsed.sections[1].text == "## ##\n\nLoose text."


def test_undecodable_utf16_fails_with_its_reason_not_a_crash() -> None:
    """A BOM-marked UTF-16 file with a lone surrogate: the UnicodeDecodeError escaped
    detection, and the worker retried it five times as an internal error."""
    data = (
        b"\xff\xfe" + '{"policy": "x'.encode("utf-16-le") + b"\x00\xd8" + '"}'.encode("utf-16-le")
    )
    reason = r"not valid UTF-16 text \(byte 28\)"
    with pytest.raises(ParseError, match=reason):
        detect_format(data, filename="lone.json")
    with pytest.raises(ParseError, match=reason):
        parse_document(data, filename="lone.json")
    with pytest.raises(ParseError, match=r"not valid UTF-8 text \(byte 5\)"):
        parse_document(codecs.BOM_UTF8 + b"ab\xff", filename="notes.txt")


def _lying_docx(extra_entries: int) -> bytes:
    """A real DOCX whose central directory holds ``extra_entries`` more entries (copies of
    its first) than its end record says: the end record claims the original count."""
    data = make_docx([("Heading 1", "Leave"), ("", "Staff get 25 days.")])
    end = data.rfind(b"PK\x05\x06")
    size = int.from_bytes(data[end + 12 : end + 16], "little")
    offset = int.from_bytes(data[end + 16 : end + 20], "little")
    directory = data[offset : offset + size]
    first = directory[
        : 46 + sum(int.from_bytes(directory[i : i + 2], "little") for i in (28, 30, 32))
    ]
    grown = directory + first * extra_entries
    record = data[end : end + 12] + len(grown).to_bytes(4, "little") + data[end + 16 :]
    return data[:offset] + grown + record


def test_a_zip_that_lies_about_its_entry_count_is_refused() -> None:
    """The end record said 1, the directory held 500,000 more: the API listed all of it in
    its event loop (2.3 s), and the parse took the archive."""
    honest = make_docx([("", "Staff get 25 days.")])
    assert detect_format(honest, sniff=True, max_archive_entries=20) == "docx"
    lying = _lying_docx(20_000)
    # Sniffing reads no more entries than the end record declares, and finds it damaged.
    with pytest.raises(UnsupportedFormat, match="damaged ZIP"):
        detect_format(lying, sniff=True, max_archive_entries=100)
    # The parser counts the directory's real entries against MAX_ARCHIVE_ENTRIES.
    with pytest.raises(UnsupportedFormat, match=r"more than 100 files \(MAX_ARCHIVE_ENTRIES\)"):
        parse_document(lying, limits=ParseLimits(max_archive_entries=100))
    assert parse_document(_lying_docx(10), limits=ParseLimits(max_archive_entries=100)).sections


@pytest.mark.parametrize("sniff", [True, False])
def test_a_declared_charset_never_fails_detection_with_another_error(sniff: bool) -> None:
    """UTF-16 declared without a byte-order mark is text (the incremental decoder raised
    UnicodeError: "does not start with BOM", which crashed the worker's event loop); a
    charset that is no text encoding is refused with the reason, never another exception."""
    text = "Staff get 25 days of annual leave."
    for charset, data in (
        ("utf-16", text.encode("utf-16-le")),
        ("utf-32", text.encode("utf-32-le")),
    ):
        assert (
            detect_format(data, content_type=f"text/plain; charset={charset}", sniff=sniff)
            == "text"
        )
    for charset in ("idna", "punycode", "hex", "base64", "rot13"):
        # Refused with its reason (UnsupportedFormat is a ParseError), or read: nothing else.
        with contextlib.suppress(ParseError):
            detect_format(
                b"h\x00i\x00 leave", content_type=f"text/plain; charset={charset}", sniff=sniff
            )


def test_a_zip_name_flagged_utf8_that_is_not_is_a_damaged_archive() -> None:
    """zipfile raised UnicodeDecodeError (not BadZipFile) while listing it: not the
    document's fault as far as the worker could tell, so retried until dead."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        archive.writestr("x\u00e9.txt", "x")  # its name is written as UTF-8, flag 0x800 set
    data = buffer.getvalue().replace("x\u00e9".encode(), b"x\xff\xfe")  # invalid UTF-8 now
    with pytest.raises(ParseError):
        detect_format(data, filename="a.docx")
