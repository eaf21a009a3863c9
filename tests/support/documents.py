"""Real documents of every supported format, generated for tests (nothing downloaded)."""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image


def make_pdf(pages: list[str], *, title: str | None = None, password: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    if password:
        pdf.set_encryption(owner_password="owner-" + password, user_password=password)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx(blocks: list[tuple[str, str]], table: list[list[str]] | None = None) -> bytes:
    """``blocks`` are (style, text): style 'Title', 'Heading 1'..'Heading 3' or '' for body."""
    from docx import Document

    document = Document()
    for style, text in blocks:
        if style == "Title":
            document.add_heading(text, level=0)
        elif style.startswith("Heading"):
            document.add_heading(text, level=int(style.split()[-1]))
        else:
            document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_docx_bomb(expanded_bytes: int = 300 * 1024 * 1024) -> bytes:
    """A DOCX-shaped ZIP whose document.xml inflates to ``expanded_bytes`` of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(expanded_bytes // len(block)):
                member.write(block)
    return buffer.getvalue()


def scanned_page(lines: list[str], *, size: tuple[int, int] = (1700, 2200)) -> Image:
    """A page as a scanner sees it: black text on white, no text layer (150 dpi letter)."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=36)
    for row, line in enumerate(lines):
        draw.text((140, 200 + row * 60), line, font=font, fill=0)
    return page


def make_scanned_pdf(pages: list[list[str]]) -> bytes:
    """A PDF of scanned pages (images only), as Pillow writes one."""
    images = [scanned_page(lines) for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def make_image(pages: list[list[str]], image_format: str) -> bytes:
    """A PNG or JPEG of one page, or a TIFF of several."""
    images = [scanned_page(lines) for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, image_format, save_all=len(images) > 1, append_images=images[1:])
    return buffer.getvalue()
