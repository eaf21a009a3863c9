"""A Markdown source read as prose: what an answer may show of it, and what it must not."""

from __future__ import annotations

from rag_query.generation.markdown import clean_inline, paragraphs


def test_links_a_reader_cannot_safely_follow_become_their_text() -> None:
    """Against a web page's address, `javascript:` and `data:` came back from urljoin as
    live links."""
    page = "https://example.org/docs/a.html"
    text = clean_inline(
        "Open [the guide](guide.md), not [this](javascript:alert(1)) or [that](data:text/html,x).",
        page,
    )
    assert "[the guide](https://example.org/docs/guide.md)" in text
    assert "javascript:" not in text
    assert "data:" not in text


def test_images_of_every_spelling_are_taken_out() -> None:
    text = clean_inline(
        'A ![chart [v2]](https://t.example/p.png) and <IMG src="https://t.example/q.png"> here.'
    )
    assert text == "A and here."


def test_an_arrow_in_prose_is_not_the_end_of_a_comment() -> None:
    """`-->` anywhere took everything before it for the end of a cut comment."""
    found = [p.text for p in paragraphs("Click Login --> Settings --> Keys.\n\nThen save it.")]
    assert found == ["Click Login --> Settings --> Keys.", "Then save it."]
    # A chunk that starts inside a comment still loses the comment's end.
    assert [p.text for p in paragraphs("the end of a comment -->\nKeys rotate daily.")] == [
        "Keys rotate daily."
    ]


def test_a_code_block_is_verbatim_and_closes_only_on_its_own_fence() -> None:
    """Comments inside code were stripped, and a ```` block holding a ``` line was closed by
    it, leaving the rest of the answer inside a code block."""
    source = "Render it like this:\n\n````md\n```html\n<!-- kept -->\n```\n````\n\nThen publish it."
    found = paragraphs(source)
    assert found[0].block == "````md\n```html\n<!-- kept -->\n```\n````"
    assert found[-1].text == "Then publish it."
