"""Reading an upload's multipart body with limits that say which one was hit.

Litestar's own form parser answers every limit with ``400 Request Entity Too Large`` (a
5,000-character file name and a 10,000-part body alike), and a part whose headers it cannot
read simply vanishes ("no files"). Here each limit is its own problem+json naming it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from multipart import (  # type: ignore[import-untyped]
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
)
from rag_core.errors import InvalidInput, PayloadTooLarge

HEADER_LINE_BYTES = 8192  # a part's header line; a longer file name is refused by its own limit


@dataclass
class FilePart:
    filename: str
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class UploadForm:
    files: list[FilePart] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload_form(
    stream: AsyncIterator[bytes], boundary: bytes, *, max_parts: int
) -> UploadForm:
    """Files from the ``file`` fields, and the text fields (the first value of each)."""
    form = UploadForm()
    current: FilePart | bytearray | None = None
    name = ""
    try:
        with PushMultipartParser(
            boundary, max_header_size=HEADER_LINE_BYTES, max_segment_count=max_parts
        ) as parser:
            async for chunk in stream:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        name = event.name
                        if event.filename is not None:
                            current = FilePart(event.filename, _media_type(event))
                        else:
                            current = bytearray()
                    elif event:
                        target = current.data if isinstance(current, FilePart) else current
                        assert target is not None
                        target.extend(event)
                    else:  # the end of a part
                        if isinstance(current, FilePart) and name == "file":
                            form.files.append(current)
                        elif isinstance(current, bytearray) and name not in form.fields:
                            form.fields[name] = current.decode("utf-8", errors="replace")
                        current = None
            for _ in parser.parse(b""):  # the end of the body
                pass
    except ParserLimitReached as exc:
        if "count" in str(exc) and "header" not in str(exc):
            raise PayloadTooLarge(
                f"the form has more than {max_parts} parts (MAX_DOCUMENTS_PER_BATCH files "
                "and a few fields)",
                extra={"limit": "MAX_DOCUMENTS_PER_BATCH"},
            ) from None
        raise InvalidInput.for_field(
            "file",
            "part headers too long",
            detail=f"a part's headers are too long or too many ({exc}); file names are limited by "
            "MAX_FILENAME_CHARS",
        ) from None
    except MultipartError as exc:
        raise InvalidInput.for_field(
            "file",
            "malformed multipart part",
            detail=f"the multipart/form-data body cannot be read ({exc}); a file name may not "
            "contain line breaks",
        ) from None
    return form


def _media_type(part: MultipartSegment) -> str | None:
    """The part's Content-Type with its charset, which says how a text file is encoded (the
    multipart parser hands them over apart)."""
    if part.content_type and part.charset:
        return f"{part.content_type}; charset={part.charset}"
    return part.content_type  # type: ignore[no-any-return]
