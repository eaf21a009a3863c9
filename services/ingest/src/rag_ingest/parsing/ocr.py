"""OCR: the text of scanned PDF pages and of images (PNG, JPEG, TIFF), read by Tesseract
(Debian's tesseract-ocr, through pytesseract), in the parser pool like every parse: the
tesseract process inherits the parser's memory limit (PARSE_MAX_MEMORY_MB, each process its
own) and its process group, so a parse that runs past PARSE_TIMEOUT_SECONDS is killed with
its tesseract; its temporary files are in the job's own directory. Each page also has its own
limit (OCR_PAGE_TIMEOUT_SECONDS).

A PDF page is rendered with pdfium (pypdfium2) at OCR_DPI, scaled down to fit OCR_MAX_PIXELS;
an image larger than OCR_MAX_PIXELS is refused before it is decoded. At most OCR_MAX_PAGES
pages of one document are read. Each page's text keeps its page number and carries Tesseract's
mean word confidence (0-100)."""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag_ingest.parsing.model import OcrLimits, PageProgress, ParsedDocument, ParseError, Section

if TYPE_CHECKING:
    from PIL.Image import Image

# Tesseract on one thread: the parser pool runs pages of several documents side by side.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
NO_TESSERACT = "OCR needs Tesseract, which is not installed here (apt-get install tesseract-ocr)"


def recognise(image: Image, limits: OcrLimits, page: int, where: str) -> Section | None:
    """The text Tesseract reads in ``image``, page ``page``, as one section (None: nothing)."""
    import pytesseract  # noqa: PLC0415  # only parser processes that OCR load it

    _check_languages(limits.languages)
    try:
        data: dict[str, list[Any]] = pytesseract.image_to_data(
            image,
            lang=limits.languages,
            output_type=pytesseract.Output.DICT,
            timeout=limits.page_timeout_seconds,
        )
    except pytesseract.TesseractNotFoundError:
        raise ParseError(NO_TESSERACT) from None
    except pytesseract.TesseractError as exc:
        message = str(exc.message)
        raise ParseError(f"OCR failed on {where} ({message.strip()[:200]})") from None
    except RuntimeError as exc:  # pytesseract's own timeout
        if "timeout" not in str(exc).lower():
            raise
        raise ParseError(
            f"OCR of {where} took longer than {limits.page_timeout_seconds:g} s "
            "(OCR_PAGE_TIMEOUT_SECONDS)"
        ) from None
    return _section(data, page)


@functools.cache
def _installed_languages() -> frozenset[str]:
    import pytesseract  # noqa: PLC0415

    try:
        return frozenset(pytesseract.get_languages(config=""))
    except pytesseract.TesseractNotFoundError:
        raise ParseError(NO_TESSERACT) from None


def _check_languages(languages: str) -> None:
    """Tesseract reads on with the languages it has when one is missing: refused instead."""
    missing = [name for name in languages.split("+") if name not in _installed_languages()]
    if missing:
        raise ParseError(
            f"OCR_LANGUAGES={languages!r} names languages Tesseract does not have here: "
            f"{', '.join(missing)} (install tesseract-ocr-{missing[0]})"
        )


def _section(data: dict[str, list[Any]], page: int) -> Section | None:
    """Tesseract's words as text: a line per line it found, a blank line between paragraphs;
    the confidence is the mean of its words'."""
    paragraphs: list[list[str]] = []
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    for i, text in enumerate(data["text"]):
        word, confidence = str(text).strip(), float(data["conf"][i])
        if not word or confidence < 0:
            continue
        confidences.append(confidence)
        line = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
        lines.setdefault(line, []).append(word)
    paragraph: tuple[int, int] | None = None
    for (block, par, _), words in sorted(lines.items()):
        if (block, par) != paragraph:
            paragraphs.append([])
            paragraph = (block, par)
        paragraphs[-1].append(" ".join(words))
    text = "\n\n".join("\n".join(p) for p in paragraphs).strip()
    if not text:
        return None
    return Section(text, page=page, ocr_confidence=round(sum(confidences) / len(confidences), 1))


def pdf_pages(
    data: bytes, numbers: list[int], limits: OcrLimits, on_page: PageProgress | None = None
) -> list[Section]:
    """The pages ``numbers`` (from 1) of a PDF, rendered and read by OCR."""
    import pypdfium2  # noqa: PLC0415

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise ParseError(f"the PDF cannot be rendered for OCR ({exc})"[:300]) from None
    sections = []
    try:
        for done, number in enumerate(numbers):
            if on_page is not None:
                on_page(done, len(numbers))
            try:
                page = document[number - 1]
                width, height = page.get_size()  # in points (1/72 inch)
                scale = limits.dpi / 72
                if width * height * scale * scale > limits.max_pixels:
                    scale = math.sqrt(limits.max_pixels / max(width * height, 1.0))
                image = page.render(scale=scale, grayscale=True).to_pil()
                page.close()
            except (pypdfium2.PdfiumError, IndexError, ValueError):
                continue  # a page pdfium cannot render (a damaged page tree): its own text
            found = recognise(image, limits, number, f"page {number}")
            if found is not None:
                sections.append(found)
    finally:
        document.close()
    return sections


def parse_image(
    data: bytes, limits: OcrLimits, on_page: PageProgress | None = None
) -> ParsedDocument:
    """An image, read by OCR: each frame of a TIFF a page of its own."""
    sections = []
    for number, frame in enumerate(_frames(data, limits, on_page), start=1):
        found = recognise(frame, limits, number, f"page {number} of the image")
        if found is not None:
            sections.append(found)
    if not sections:
        raise ParseError("OCR found no text in the image")
    return ParsedDocument("image", sections)


def _frames(data: bytes, limits: OcrLimits, on_page: PageProgress | None) -> Iterator[Image]:
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    Image.MAX_IMAGE_PIXELS = limits.max_pixels  # past twice this, Pillow refuses to open
    try:
        with warnings.catch_warnings():
            # Between one and two times the limit Pillow only warns: refused below, by name.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as image:
            frames = getattr(image, "n_frames", 1)
            if frames > limits.max_pages:
                raise ParseError(
                    f"the image has {frames} pages; OCR reads at most {limits.max_pages} "
                    "(OCR_MAX_PAGES)"
                )
            for index in range(frames):
                if on_page is not None:
                    on_page(index, frames)
                image.seek(index)
                width, height = image.size
                if width * height > limits.max_pixels:
                    raise ParseError(
                        f"the image is {width}x{height} pixels; OCR reads at most "
                        f"{limits.max_pixels} pixels a page (OCR_MAX_PIXELS)"
                    )
                image.load()
                yield image.convert("L")
    except Image.DecompressionBombError:
        raise ParseError(
            f"the image is over {limits.max_pixels} pixels, the most OCR reads of a page "
            "(OCR_MAX_PIXELS)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ParseError(f"not a readable image ({type(exc).__name__}: {exc})"[:300]) from None
