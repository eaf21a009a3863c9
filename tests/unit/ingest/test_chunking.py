"""Chunking: token and character bounds, structure, and hostile text (long words, huge
documents) stopped early, with the real WordPiece tokenizer."""

from __future__ import annotations

import pytest
from rag_core.embedding.wordpiece import token_spans
from rag_ingest.chunking import LONGEST_TOKEN_CHARS, TooManyChunks, chunk_sections
from rag_ingest.parsing import Section


def _chunk(text: str, **options: int) -> list[str]:
    settings = {"size": 50, "overlap": 10, "max_chars": 1000} | options
    return [c.text for c in chunk_sections([Section(text)], token_spans, **settings)]


def test_chunks_hold_at_most_size_tokens_and_end_at_sentences() -> None:
    text = " ".join(f"Sentence number {i} talks about proteins folding." for i in range(40))
    chunks = chunk_sections([Section(text)], token_spans, size=50, overlap=10)
    assert len(chunks) > 3
    assert all(c.token_count <= 50 for c in chunks)
    assert all(len(token_spans(c.text)) <= 50 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks[:-1])
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_a_word_of_two_megabytes_never_makes_a_chunk_past_max_chars() -> None:
    """WordPiece counts a word with no spaces as one unknown token: 2 MB became one chunk."""
    word = "x" * (2 * 1024 * 1024)
    chunks = _chunk(f"Before. {word} After.", max_chars=4000, size=200, overlap=40)
    assert max(len(c) for c in chunks) <= 4000
    assert sum(c.count("x") for c in chunks) >= len(word)  # all of it, some overlapping
    assert chunks[0].startswith("Before.")
    assert chunks[-1].endswith("After.")


def test_characters_bound_a_chunk_even_when_its_tokens_fit() -> None:
    # Words past 100 characters are one unknown token each to WordPiece (two pieces here):
    # 50 tokens of them would be 3,000 characters. The character bound cuts first.
    text = " ".join("ab" * 60 for _ in range(200))
    chunks = _chunk(text, max_chars=500)
    assert max(len(c) for c in chunks) <= 500
    assert max(len(c) for c in chunks) > LONGEST_TOKEN_CHARS


def test_characters_that_make_no_tokens_count_against_max_chars_too() -> None:
    """Zero-width spaces, combining marks and control characters make no tokens: a paragraph
    of ten tokens and 95,000 zero-width spaces was one chunk of 95,043 characters (a search
    returned 5.7 MB)."""
    sentence = "Staff get 25 days of annual leave per year."
    text = "\n\n".join(sentence + "\u200b" * 95_000 for _ in range(20))
    chunks = _chunk(text, size=200, overlap=40, max_chars=4000)
    assert len(chunks) == 20
    assert all(c.startswith(sentence) and len(c) <= 4000 for c in chunks)
    for invisible in ("\u200b", "\u0301", "\x07"):
        for text in (invisible * 5000 + sentence, sentence + invisible * 5000):
            chunks = _chunk(text, max_chars=1000)
            assert chunks, repr(invisible)
            assert max(len(c) for c in chunks) <= 1000, repr(invisible)
            assert any("annual leave" in c for c in chunks), repr(invisible)


def test_a_huge_document_stops_at_the_chunk_limit_without_reading_it_all() -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 200_000  # 11 MB
    seen: list[int] = []

    def counting_spans(piece: str) -> list[tuple[int, int]]:
        seen.append(len(piece))
        return token_spans(piece)

    with pytest.raises(TooManyChunks, match="more than 100 chunks"):
        chunk_sections(
            [Section(text)], counting_spans, size=200, overlap=40, max_chars=4000, max_chunks=100
        )
    assert sum(seen) < len(text) / 20, "it stopped long before tokenising everything"


def test_sections_are_never_crossed_and_keep_their_structure() -> None:
    sections = [
        Section("Intro text about enzymes.", ("Intro",), page=1),
        Section("Methods text about assays. " * 30, ("Methods",), page=2),
    ]
    chunks = chunk_sections(sections, token_spans, size=40, overlap=5)
    assert chunks[0].text == "Intro text about enzymes."
    assert chunks[0].heading_path == ("Intro",)
    assert {c.page for c in chunks[1:]} == {2}
    assert all("enzymes" not in c.text for c in chunks[1:])


def test_a_chunk_header_is_the_title_and_headings_each_once_and_bounded() -> None:
    from rag_core.chunks import StoredChunk, decode, encode, indexed_text
    from rag_ingest.worker.pipeline import chunk_header

    # A Markdown document's title is its first heading: it is not said twice.
    assert chunk_header("Gateway", ("Gateway", "Credentials"), 200) == "Gateway > Credentials"
    assert chunk_header(None, ("Setup",), 200) == "Setup"
    assert chunk_header("  Spaced\n title ", (), 200) == "Spaced title"
    assert chunk_header("A long title", ("Part",), 6) == "A long"
    assert chunk_header("Any title", ("Part",), 0) is None  # CHUNK_HEADER_MAX_CHARS=0: none
    assert chunk_header(None, (), 200) is None

    chunk = StoredChunk("c", "d", "1", 0, "The text itself.", header="Gateway > Credentials")
    assert indexed_text(chunk) == "Gateway > Credentials\nThe text itself."
    stored = decode("c", chunk.text, encode(chunk))
    assert (stored.text, stored.header) == ("The text itself.", "Gateway > Credentials")
    assert indexed_text(StoredChunk("c", "d", "1", 0, "Alone.")) == "Alone."


def test_the_embedder_reads_the_header_only_where_the_chunk_says_it_did() -> None:
    from rag_core.chunks import StoredChunk, decode, embedded_text, encode, indexed_text

    plain = StoredChunk("c", "d", "1", 0, "Text.", header="Title", header_embedded=False)
    assert (indexed_text(plain), embedded_text(plain)) == ("Title\nText.", "Text.")
    assert embedded_text(decode("c", "Text.", encode(plain))) == "Text."  # kept in the store
    # Chunks stored before the setting existed carry no mark: their vectors read the header.
    legacy = encode(StoredChunk("c", "d", "1", 0, "Text.", header="Title"))
    assert not any("embedded" in key for key in legacy)
    assert embedded_text(decode("c", "Text.", legacy)) == "Title\nText."
    # No header: the text either way, and nothing stored about it.
    bare = StoredChunk("c", "d", "1", 0, "Text.", header_embedded=False)
    assert embedded_text(bare) == "Text."
    assert not any("embedded" in k for k in encode(bare))


def test_a_chunk_keeps_the_revision_of_the_model_its_vector_is_of() -> None:
    from rag_core.chunks import StoredChunk, decode, encode

    revised = StoredChunk("c", "d", "1", 0, "Text.", model_revision="w7")
    assert decode("c", "Text.", encode(revised)).model_revision == "w7"
    # Chunks stored before a revision carry none, and read so.
    before = encode(StoredChunk("c", "d", "1", 0, "Text."))
    assert not any("revision" in key for key in before)
    assert decode("c", "Text.", before).model_revision == ""


def _wrap(text: str, width: int) -> list[str]:
    """``text``'s words in lines of at most about ``width`` characters, as an editor wraps."""
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return [*lines, line]


def test_hard_wrapped_prose_is_cut_at_sentences_not_at_its_line_breaks() -> None:
    """Markdown wrapped at 80 columns: each line break counted as a sentence's end, so chunks
    ended and began mid-sentence ("the writers (ingest API and workers) stop before Redis")
    and the sentence that answered was in neither half."""
    sentence = (
        "Backups of the stack are taken at one moment, with the writers stopped before the "
        "snapshot and started again afterwards, also when a step fails."
    )
    text = "\n".join(_wrap(" ".join([sentence] * 12), 78))
    chunks = [" ".join(c.split()) for c in _chunk(text, size=100, overlap=40)]
    assert len(chunks) > 3
    assert all(c.startswith("Backups") and c.endswith("fails.") for c in chunks), chunks


def test_a_line_that_starts_a_list_item_is_still_a_place_to_cut() -> None:
    """Items end without a full stop and wrap: a new item starts something, a wrap does not."""
    items = "\n".join(
        f"- item {i} holds a few words of its own\n  that wrap to a line" for i in range(30)
    )
    chunks = _chunk(items, size=60, overlap=20)
    assert len(chunks) > 3
    assert all(c.startswith("- item") for c in chunks), chunks


def _lines(chunk: str, text: str) -> bool:
    """The chunk starts at the start of one of ``text``'s lines and ends at the end of one."""
    lines = [line.strip() for line in text.splitlines()]
    first, last = chunk.splitlines()[0].strip(), chunk.splitlines()[-1].strip()
    return first in lines and last in lines


def test_code_and_json_are_cut_between_their_lines_not_at_a_colon() -> None:
    """With a line break weaker than a sentence's end, a colon mid-line ("limit: int") was
    the strongest place to cut: chunks of code and JSON ended and began mid-line."""
    code = "\n".join(
        f"def handler_{i}(request: Request, limit: int) -> Response\n"
        f"    return build_response(request, limit)"
        for i in range(20)
    )
    chunks = _chunk(code, size=60, overlap=20)
    assert len(chunks) > 3
    assert all(_lines(c, code) for c in chunks), chunks
    json_lines = "\n".join(f'  "field_{i}": "value {i}; more words here",' for i in range(60))
    chunks = _chunk(json_lines, size=60, overlap=20)
    assert len(chunks) > 3
    assert all(_lines(c, json_lines) for c in chunks), chunks


def test_a_chunk_starts_at_a_line_when_its_overlap_holds_no_sentence_start() -> None:
    """A sentence longer than the overlap: the next chunk starts at one of its lines, not at
    a clause or a word."""
    # No full stop at all, clauses, and lines of uneven tokens.
    words = " ".join(f"word{i} and{' some' * (i % 3)} filler{';' * (i % 2)}" for i in range(300))
    wrapped = _wrap(words, 43)
    text = "\n".join(wrapped)
    chunks = _chunk(text, size=60, overlap=25)
    assert len(chunks) > 3
    assert all(c.splitlines()[0] in wrapped for c in chunks[1:]), chunks
