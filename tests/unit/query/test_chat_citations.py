"""The list of cited sources the OpenAI route adds to an answer, and takes off a turn sent
back."""

from __future__ import annotations

from typing import Any

from rag_query.openai_api.citations import citation_list, without_citation_list


def _source(number: int, **fields: Any) -> dict[str, Any]:
    return {"number": number, "chunk_id": f"c{number}", "document_id": f"d{number}", **fields}


def test_the_list_names_each_cited_source_once_in_number_order() -> None:
    sources = [
        _source(1, title="Gateway", heading="API keys", source="docs/gateway.md"),
        _source(2, title="Release notes", source="https://example.org/notes", page=3),
        _source(3, title="Gateway", heading="API keys", source="docs/gateway.md"),
        _source(4, title="Not cited"),
        _source(6, title="Guide", heading="Guide > Setup > Keys", source="guide.md"),
        _source(5),
    ]
    assert citation_list(sources, [3, 2, 1, 5, 6, 9]) == (
        "\n\n**Sources**\n"
        "- [1], [3] Gateway — API keys · `docs/gateway.md`\n"
        "- [2] [Release notes](https://example.org/notes) · page 3\n"
        "- [5] `d5`\n"
        "- [6] Guide — Setup \u203a Keys · `guide.md`"  # the title is not said twice
    )
    assert citation_list(sources, []) == ""  # nothing cited, nothing added


def test_a_documents_own_fields_cannot_forge_links_or_markup() -> None:
    """Titles and sources are whatever a document was ingested with."""
    sources = [
        _source(1, title="[click](https://evil.example) **now**", source="javascript:alert(1)"),
        _source(2, title="Notes", source="https://example.org/a (b)"),
        _source(3, source="https://example.org/x)[y](https://evil.example"),
        _source(4, title="A\n\n# heading", source="file`name.md"),
    ]
    listed = citation_list(sources, [1, 2, 3, 4])
    assert "[click](" not in listed
    assert "[y](" not in listed
    assert "(javascript:" not in listed
    assert r"\[click\]" in listed
    assert "`javascript:alert(1)`" in listed  # shown as text, not followed
    assert "\n#" not in listed
    assert "`file'name.md`" in listed
    lines = listed.splitlines()
    assert len(lines) == 7  # blank, heading, and one line per source


def test_the_list_is_taken_off_an_earlier_answer_sent_back() -> None:
    answer = "Keys are hashed. [1]"
    listed = answer + citation_list([_source(1, title="Gateway")], [1])
    assert without_citation_list(listed) == answer
    assert without_citation_list(answer) == answer
    # Text that merely mentions sources stays.
    told = "The **Sources** section lists them.\n- [1] is the first."
    assert without_citation_list(told) == told


def test_an_answer_that_merely_ends_in_blank_lines_is_kept() -> None:
    """The list was found with a pattern that backtracked over long runs of blank lines."""
    sent_back = "x" + "\n" * 50_000
    assert without_citation_list(sent_back) == sent_back
