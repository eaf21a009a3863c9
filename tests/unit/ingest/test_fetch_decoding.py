"""A fetched body's Content-Encoding is undone a bounded piece at a time (issue 22): a
compression bomb never holds more than the limit plus one piece of decoded bytes."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from rag_ingest.fetching.fetcher import (
    DECODE_PIECE_BYTES,
    BodyDecoder,
    FetchRefused,
    TooLarge,
    decode_body,
)

URL = "http://example.org/page"
LIMIT = 1024 * 1024


def _compress(data: bytes, coding: str) -> bytes:
    wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS, "raw": -zlib.MAX_WBITS}
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits[coding])
    return compressor.compress(data) + compressor.flush()


def _reads(body: bytes, size: int) -> Iterator[bytes]:
    """The body as a network would hand it over: reads of ``size`` bytes."""
    return (body[i : i + size] for i in range(0, len(body), size))


def _decode(decoder: BodyDecoder, reads: Iterator[bytes], sizes: list[int]) -> None:
    """Decode every read, noting the size of each piece as it comes out."""
    for raw in reads:
        sizes.extend(len(piece) for piece in decoder.decode(raw))


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("read_size", [7, 65_536])
def test_a_bomb_stops_at_the_limit_with_at_most_one_piece_more_decoded(
    coding: str, read_size: int
) -> None:
    bomb = _compress(bytes(64 * LIMIT), coding)  # 64 MB of zeros in ~64 KB
    decoder = BodyDecoder(URL, coding, LIMIT)
    sizes: list[int] = []
    with pytest.raises(TooLarge, match="MAX_FILE_BYTES"):
        _decode(decoder, _reads(bomb, read_size), sizes)
    assert max(sizes) <= DECODE_PIECE_BYTES
    assert sum(sizes) <= LIMIT  # what the caller was handed
    assert decoder.decoded <= LIMIT + DECODE_PIECE_BYTES  # all that was ever decoded


@pytest.mark.parametrize(
    ("coding", "header"),
    [("gzip", "gzip"), ("gzip", "x-gzip"), ("deflate", "deflate"), ("raw", "deflate")],
)
def test_bodies_under_the_limit_decode_exactly(coding: str, header: str) -> None:
    text = b"".join(b"line %d of a page that compresses well\n" % i for i in range(20_000))
    decoder = BodyDecoder(URL, f"identity, {header}", LIMIT)
    decoded = b"".join(
        piece for raw in _reads(_compress(text, coding), 1000) for piece in decoder.decode(raw)
    )
    assert decoded == text


def test_the_bytes_received_count_too() -> None:
    """A body that decodes to little (or is not compressed) is still refused past the limit."""
    decoder = BodyDecoder(URL, "", LIMIT)
    with pytest.raises(TooLarge, match="MAX_FILE_BYTES"):
        _decode(decoder, _reads(bytes(LIMIT + 1), 65_536), [])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("gzip, gzip", "more than one content-coding"),
        ("deflate, gzip, gzip", "more than one content-coding"),
        ("br", "Content-Encoding 'br'"),
        ("zstd", "Content-Encoding 'zstd'"),
    ],
)
def test_stacked_or_unknown_codings_are_refused(header: str, reason: str) -> None:
    with pytest.raises(FetchRefused, match=reason):
        BodyDecoder(URL, header, LIMIT)


def test_a_corrupt_body_is_refused_with_its_reason() -> None:
    decoder = BodyDecoder(URL, "gzip", LIMIT)
    with pytest.raises(FetchRefused, match="cannot be decoded"):
        list(decoder.decode(b"this is not gzip at all"))


def test_decode_body_undoes_a_whole_body_within_the_limit() -> None:
    """What the parser pool runs on a fetched body (the worker only receives it)."""
    page = b"<p>Enzymes fold.</p>" * 5000
    assert decode_body(URL, _compress(page, "gzip"), "gzip", LIMIT) == page
    assert decode_body(URL, _compress(page, "raw"), "deflate", LIMIT) == page
    with pytest.raises(TooLarge, match="MAX_FILE_BYTES"):
        decode_body(URL, _compress(b"\0" * (4 * LIMIT), "gzip"), "gzip", LIMIT)
