"""OCR with the real Tesseract (Debian's tesseract-ocr): scanned PDF pages and images the tests
draw with Pillow, read with their page numbers and confidence; every limit refuses with its
name; a corrupt image fails with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from fpdf import FPDF
from rag_ingest.parsing import (
    OcrLimits,
    ParseError,
    ParseLimits,
    UnsupportedFormat,
    detect_format,
    parse_document,
)

from tests.support.documents import make_image, make_scanned_pdf, scanned_page

AUDIT = ["The quarterly safety audit found", "three blocked fire exits in hangar 7."]
REPAIRS = ["Repairs are due by the fourteenth of March.", "Contact the facilities desk."]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_a_scanned_pdf_is_read_page_by_page_with_its_confidence() -> None:
    parsed = parse_document(make_scanned_pdf([AUDIT, REPAIRS]))
    assert parsed.format == "pdf"
    assert [s.page for s in parsed.sections] == [1, 2]
    assert _words(parsed.sections[0].text) == " ".join(AUDIT)
    assert _words(parsed.sections[1].text) == " ".join(REPAIRS)
    for section in parsed.sections:
        assert section.ocr_confidence is not None
        assert 80 <= section.ocr_confidence <= 100


def test_each_page_is_told_before_ocr_reads_it() -> None:
    told: list[tuple[int, int]] = []
    parse_document(make_scanned_pdf([AUDIT, REPAIRS]), on_page=lambda *page: told.append(page))
    assert told == [(0, 2), (1, 2)]
    told.clear()
    parse_document(make_image([AUDIT, REPAIRS, AUDIT], "TIFF"), on_page=lambda *p: told.append(p))
    assert told == [(0, 3), (1, 3), (2, 3)]


def test_only_the_pages_without_text_are_read_by_ocr() -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "This first page has a text layer about the budget for next year.")
    pdf.add_page()
    pdf.image(scanned_page(REPAIRS), x=0, y=0, w=210)
    parsed = parse_document(bytes(pdf.output()))
    assert [(s.page, s.ocr_confidence is not None) for s in parsed.sections] == [
        (1, False),
        (2, True),
    ]
    assert "Repairs are due by the fourteenth of March." in _words(parsed.sections[1].text)


def test_blank_pages_are_not_read_and_do_not_count_against_ocr_max_pages() -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "A report with a text layer, and many blank pages after it.")
    for _ in range(25):
        pdf.add_page()
    told: list[tuple[int, int]] = []
    parsed = parse_document(
        bytes(pdf.output()),
        limits=ParseLimits(ocr=OcrLimits(max_pages=2)),
        on_page=lambda *page: told.append(page),
    )
    assert [s.page for s in parsed.sections] == [1]
    assert told == []


def test_a_stamp_on_a_blank_scan_is_kept_when_ocr_reads_nothing() -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.image(scanned_page([]), x=0, y=0, w=210)
    pdf.text(180, 290, "p. 1")
    parsed = parse_document(bytes(pdf.output()))
    assert [(s.page, s.text, s.ocr_confidence) for s in parsed.sections] == [(1, "p. 1", None)]


def test_a_broken_image_reference_is_no_image_not_a_failed_document() -> None:
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import DictionaryObject, IndirectObject, NameObject

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.text(20, 20, "Short page")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    resources = writer.pages[0][NameObject("/Resources")].get_object()
    resources[NameObject("/XObject")] = DictionaryObject(
        {NameObject("/Im9"): IndirectObject(999, 0, writer)}
    )
    broken = io.BytesIO()
    writer.write(broken)
    parsed = parse_document(broken.getvalue())
    assert [(s.page, s.text) for s in parsed.sections] == [(1, "Short page")]


def test_a_page_with_a_stamp_over_a_scan_is_read_by_ocr_and_a_short_text_page_is_not() -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.image(scanned_page(AUDIT), x=0, y=0, w=210)
    pdf.text(180, 290, "p. 1")  # the scanner's stamp: a text layer of four characters
    pdf.add_page()
    pdf.text(20, 20, "Appendix")  # a short page, no image: its own text, no OCR
    parsed = parse_document(bytes(pdf.output()))
    assert parsed.sections[0].ocr_confidence is not None
    assert "three blocked fire exits" in _words(parsed.sections[0].text)
    assert (parsed.sections[1].text, parsed.sections[1].ocr_confidence) == ("Appendix", None)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_an_image_is_a_document_of_one_page(image_format: str) -> None:
    parsed = parse_document(make_image([AUDIT], image_format), filename=f"scan.{image_format}")
    assert parsed.format == "image"
    assert [s.page for s in parsed.sections] == [1]
    assert _words(parsed.sections[0].text) == " ".join(AUDIT)


def test_each_frame_of_a_tiff_is_a_page() -> None:
    parsed = parse_document(make_image([AUDIT, REPAIRS], "TIFF"))
    assert [s.page for s in parsed.sections] == [1, 2]
    assert "fourteenth of March" in _words(parsed.sections[1].text)


def test_a_corrupt_image_fails_with_a_reason() -> None:
    png = make_image([AUDIT], "PNG")
    with pytest.raises(ParseError, match="not a readable image"):
        parse_document(png[:200] + b"\0" * 500)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` and holds one row: a pixel bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_an_image_over_ocr_max_pixels_is_refused_before_it_is_decoded() -> None:
    bomb = _png_header(50_000, 50_000)  # 2.5 gigapixels in a few kilobytes
    assert len(bomb) < 100_000
    with pytest.raises(ParseError, match="OCR_MAX_PIXELS"):
        parse_document(bomb)
    small = ParseLimits(ocr=OcrLimits(max_pixels=1_000_000))
    with pytest.raises(ParseError, match=r"over 1000000 pixels.*OCR_MAX_PIXELS"):
        parse_document(make_image([AUDIT], "PNG"), limits=small)  # 3.7 Mpx: Pillow's refusal
    within_twice = ParseLimits(ocr=OcrLimits(max_pixels=2_500_000))
    with pytest.raises(ParseError, match=r"1700x2200 pixels.*OCR_MAX_PIXELS"):
        parse_document(make_image([AUDIT], "PNG"), limits=within_twice)  # our own check


def test_a_pdf_page_over_ocr_max_pixels_is_rendered_smaller_and_still_read() -> None:
    limits = ParseLimits(ocr=OcrLimits(max_pixels=2_000_000, dpi=600))
    parsed = parse_document(make_scanned_pdf([AUDIT]), limits=limits)
    assert "three blocked fire exits" in _words(parsed.sections[0].text)


def test_ocr_page_limits_name_their_setting() -> None:
    few = ParseLimits(ocr=OcrLimits(max_pages=1))
    with pytest.raises(ParseError, match=r"2 scanned pages.*OCR_MAX_PAGES"):
        parse_document(make_scanned_pdf([AUDIT, REPAIRS]), limits=few)
    with pytest.raises(ParseError, match=r"2 pages.*OCR_MAX_PAGES"):
        parse_document(make_image([AUDIT, REPAIRS], "TIFF"), limits=few)
    hurried = ParseLimits(ocr=OcrLimits(page_timeout_seconds=0.001))
    with pytest.raises(ParseError, match="OCR_PAGE_TIMEOUT_SECONDS"):
        parse_document(make_scanned_pdf([AUDIT]), limits=hurried)


def test_a_language_tesseract_does_not_have_is_named() -> None:
    klingon = ParseLimits(ocr=OcrLimits(languages="eng+tlh"))
    with pytest.raises(ParseError, match=r"OCR_LANGUAGES='eng\+tlh'.*: tlh"):
        parse_document(make_image([AUDIT], "PNG"), limits=klingon)


def test_with_ocr_off_images_are_refused_and_scans_say_why() -> None:
    off = ParseLimits(ocr=None)
    with pytest.raises(UnsupportedFormat, match="OCR_ENABLED=false"):
        parse_document(make_image([AUDIT], "PNG"), limits=off)
    with pytest.raises(ParseError, match=r"no text layer.*OCR_ENABLED=false"):
        parse_document(make_scanned_pdf([AUDIT]), limits=off)


def test_a_blank_scan_fails_saying_ocr_found_nothing() -> None:
    blank = io.BytesIO()
    scanned_page([]).save(blank, "PDF", resolution=150)
    with pytest.raises(ParseError, match="OCR found none on its scanned pages"):
        parse_document(blank.getvalue())


def test_the_api_refuses_images_when_ocr_is_off_and_accepts_them_when_on() -> None:
    png = make_image([AUDIT], "PNG")
    assert detect_format(png, sniff=True) == "image"
    for signature in (b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*"):
        assert detect_format(signature + b"\x01" * 100, sniff=True) == "image"
    with pytest.raises(UnsupportedFormat, match="OCR_ENABLED=false"):
        detect_format(png, sniff=True, images=False)
