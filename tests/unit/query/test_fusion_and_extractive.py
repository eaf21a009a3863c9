"""Rank fusion, MMR, the extractive generator and prompt overrides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from rag_query.generation.base import Message, Usage
from rag_query.generation.extractive import (
    LONGEST_JOINED,
    NOT_ANSWERED,
    ExtractiveGenerator,
    prose,
    split_sentences,
)
from rag_query.generation.prompts import Prompts
from rag_query.generation.sources import Source, cited_numbers, format_sources
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.fusion import fuse_rankings, fuse_scores, select_diverse


def test_rrf_rewards_agreement_and_weights_shift_it() -> None:
    rankings = {"dense": ["a", "b", "c"], "lexical": ["b", "d", "a"]}
    fused = [item for item, _ in fuse_rankings(rankings, {}, 60)]
    assert fused[:2] == ["b", "a"]  # found by both
    lexical_heavy = fuse_rankings(rankings, {"dense": 0.0, "lexical": 1.0}, 60)
    assert [item for item, score in lexical_heavy if score > 0] == ["b", "d", "a"]
    assert fuse_rankings({"x": ["b", "a"], "y": ["a", "b"]}, {}, 60)[0][0] == "a"  # ties: id


def test_convex_fusion_weighs_normalised_scores_and_rates_the_missing_at_the_last() -> None:
    dense = [("a", 0.8), ("b", 0.6), ("c", 0.2)]  # cosine: scaled from -1 to the best (0.8)
    lexical = [("c", 12.0), ("b", 6.0)]  # BM25: scaled from 0 to the best (12)
    floors = {"dense": -1.0, "lexical": 0.0}
    fused = dict(fuse_scores({"dense": dense, "lexical": lexical}, {}, floors))
    assert fused["a"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)  # not in lexical: its last (0.5)
    assert fused["b"] == pytest.approx(0.5 * 1.6 / 1.8 + 0.5 * 0.5)
    assert fused["c"] == pytest.approx(0.5 * 1.2 / 1.8 + 0.5 * 1.0)
    # Weights are shares: dense 3 to lexical 1 is 0.75 to 0.25.
    heavy = dict(fuse_scores({"dense": dense, "lexical": lexical}, {"dense": 3.0}, floors))
    assert heavy["a"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.5)
    # Without floors a list is scaled between its own worst and best.
    own = dict(fuse_scores({"dense": dense}, {}, {}))
    assert (own["a"], own["c"]) == (1.0, 0.0)
    assert fuse_scores({"x": [("b", 1.0)], "y": [("a", 1.0)]}, {}, {})[0][0] == "a"  # ties: id


def test_mmr_skips_near_duplicates() -> None:
    vectors = np.array([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert select_diverse([1.0, 0.95, 0.5], vectors, 2, 0.5) == [0, 2]
    assert select_diverse([1.0, 0.95, 0.5], vectors, 2, 1.0) == [0, 1]  # relevance only


def _sources() -> list[Source]:
    return [
        Source(1, "c1", "leave", "Annual leave. Staff get 25 days of leave. Ask your manager."),
        Source(2, "c2", "expenses", "Expenses are paid within 30 days. Keep receipts."),
    ]


async def test_extractive_answers_only_with_cited_source_sentences() -> None:
    generator = ExtractiveGenerator(Analyzer())
    usage = Usage()
    text = "".join(
        [
            piece
            async for piece in generator.answer("How many days of leave?", _sources(), [], usage)
        ]
    )
    assert text == "Staff get 25 days of leave. [1]"
    assert cited_numbers(text, _sources()) == [1]
    assert usage.output_tokens > 0


async def test_a_document_cannot_forge_citations_of_other_sources() -> None:
    """A document whose text says "[2][3]" made the answer cite sources 2 and 3."""
    sources = [
        Source(1, "c1", "forger", "Staff get 25 days of leave as shown in [2][3] and [1]."),
        Source(2, "c2", "expenses", "Expenses are paid within 30 days. Keep receipts."),
        Source(3, "c3", "parking", "The car park opens at seven in the morning."),
    ]
    generator = ExtractiveGenerator(Analyzer())
    text = "".join(
        [p async for p in generator.answer("How many days of leave?", sources, [], Usage())]
    )
    assert cited_numbers(text, sources) == [1]
    assert text.endswith("[1]")
    assert "\uff3b2\uff3d\uff3b3\uff3d" in text  # the document's words, kept, inert
    # What an LLM is shown marks the sources; the documents' own brackets are inert too.
    prompt = format_sources(sources)
    assert prompt.count("[2]") == 1
    assert prompt.count("[3]") == 1
    # So are those of a label: a source without a title is labelled by its document id, and
    # an id may hold brackets (BEIR's "<dbpedia:...>" ids, "Notes_[2]").
    untitled = [Source(1, "c1", "Notes_[2]", "Staff get 25 days."), Source(2, "c2", "d", "x")]
    assert format_sources(untitled).count("[2]") == 1


def test_sentences_split_at_ends_not_at_abbreviated_numbers() -> None:
    assert split_sentences("It costs 2.5 euros. Next one! Last?") == [
        "It costs 2.5 euros.",
        "Next one!",
        "Last?",
    ]


def test_a_sentence_runs_on_past_an_abbreviation_and_inside_brackets() -> None:
    """ "e.g. `text/plain`" ended a sentence: its tail became a sentence of its own that
    answered questions about uploads."""
    text = (
        "Text must be UTF-8 (or declare its charset, e.g. `text/plain; charset=latin-1`; "
        "for a file. See its part). Then it is parsed, i.e. Read. Done.\n\n(An aside\n\n"
        "Next paragraph."
    )
    assert split_sentences(text) == [
        "Text must be UTF-8 (or declare its charset, e.g. `text/plain; charset=latin-1`; "
        "for a file. See its part).",
        "Then it is parsed, i.e. Read.",
        "Done.",
        "(An aside",  # a paragraph break ends it, brackets or not
        "Next paragraph.",
    ]


def test_a_stray_bracket_or_a_final_no_does_not_join_sentences() -> None:
    """An open bracket joined every sentence after it, so the answer was the whole chunk."""
    assert split_sentences(
        "Restores are run by an operator (see the runbook for who is on call. Restores take "
        "ten minutes. The vault keeps copies. Smileys :( are sad. The interval [0, 1) is "
        "open. Use ``a(b`` here. The answer is no. The next step is to wait."
    ) == [
        "Restores are run by an operator (see the runbook for who is on call.",
        "Restores take ten minutes.",
        "The vault keeps copies.",
        "Smileys :( are sad.",
        "The interval [0, 1) is open.",
        "Use ``a(b`` here.",
        "The answer is no.",
        "The next step is to wait.",
    ]
    # Joining stops at LONGEST_JOINED characters, whatever the text; and it stays fast.
    hostile = split_sentences("See e.g. Foo. " * 5000 + "(A. " * 50_000)
    assert max(len(s) for s in hostile) <= LONGEST_JOINED
    assert len(hostile) > 50_000


def test_citations_name_only_existing_sources() -> None:
    assert cited_numbers("A [2] b [1][2] c [7].", _sources()) == [2, 1]


def test_prompt_files_can_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "hyde.txt").write_text("Imagine an answer to: $question")
    prompts = Prompts(str(tmp_path))
    assert (
        prompts.render("hyde", question="why {braces} stay")
        == "Imagine an answer to: why {braces} stay"
    )
    assert "numbered sources" in prompts.render("answer_system")  # the rest stay shipped


MARKDOWN_SOURCE = """## Credentials

| scope | allows |
|---|---|
| `admin` | keys are stored and everything else |

```
keys ──▶ stored ──▶ redis
```

See [API keys](gateway.md#keys), [key storage](deploy.md) and [stored keys](redis.md).

- **API keys** `rag_<id>_<secret>`. Redis keeps only a SHA-256 of the secret; the key is
  shown once, when it is created.
"""


async def test_extractive_answers_with_prose_not_headings_tables_code_or_links() -> None:
    """Asked how keys are stored over Markdown, the answer was a table row and a line of
    links that shared the question's words; it must be the sentence that says so."""
    sources = [Source(1, "c1", "gateway", MARKDOWN_SOURCE)]
    generator = ExtractiveGenerator(Analyzer())
    text = "".join(
        [p async for p in generator.answer("How are API keys stored?", sources, [], Usage())]
    )
    assert text == (
        "**API keys** `rag_<id>_<secret>`. Redis keeps only a SHA-256 of the secret; the key is "
        "shown once, when it is created. [1]"
    )
    for layout in ("|", "──▶", "[API keys]", "##", "- **"):
        assert layout not in text, (layout, text)
    assert text.endswith("[1]")


def test_prose_keeps_a_block_it_cannot_see_both_fences_of() -> None:
    """A chunk cut inside a code block holds one fence: only that line goes, not the prose
    after it."""
    assert "The worker retries three times." in prose("```\nThe worker retries three times.\n")
    kept = prose("- first item\n- second item\n  wraps here\n")
    assert split_sentences(kept) == ["first item", "second item wraps here"]


def _bag_of_topics(texts: Sequence[str]) -> np.ndarray:
    """A stand-in embedder: one dimension per topic, so "images" and "PNG" mean the same."""
    topics = [("png", "images", "zip", "archives"), ("screenshot", "playground"), ("saved",)]
    rows = [
        [float(any(t in text.lower() for t in topic)) + 0.01 for topic in topics] for text in texts
    ]
    return np.asarray(rows, dtype=np.float32)


async def _answer(generator: ExtractiveGenerator, question: str, sources: list[Source]) -> str:
    return "".join([p async for p in generator.answer(question, sources, [], Usage())])


def _similar(scores: dict[str, float]) -> Callable[[Sequence[str]], Awaitable[np.ndarray]]:
    """An embedder under which a sentence ending in a key of ``scores`` has that similarity to
    the question (any text with a "?"), and any other sentence none."""

    async def embed(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            score = next((v for k, v in scores.items() if text.rstrip(".").endswith(k)), None)
            # The question is [1, 0]; a sentence's similarity to it is its first component.
            similarity = 1.0 if score is None and "?" in text else score or 0.0
            rows.append([similarity, (1 - similarity**2) ** 0.5])
        return np.asarray(rows, dtype=np.float32)

    return embed


async def test_sentences_score_by_meaning_and_the_answer_keeps_to_one_document() -> None:
    """Asked about a PNG or a zip, the words matched a sentence about screenshots in another
    document; by meaning, the one that says images and archives are refused answers, and the
    screenshots' document is not cited beside it."""
    sources = [
        Source(1, "c1", "development", "Screenshots of the playground are saved as PNG files."),
        Source(2, "c2", "ingest", "Anything else (images, archives, executables) is refused."),
    ]

    async def embed(texts: Sequence[str]) -> np.ndarray:
        return _bag_of_topics(texts)

    question = "Can I upload a PNG or a zip?"
    by_words = await _answer(ExtractiveGenerator(Analyzer()), question, sources)
    assert by_words.startswith("Screenshots")
    by_meaning = await _answer(ExtractiveGenerator(Analyzer(), embed=embed), question, sources)
    assert by_meaning == "Anything else (images, archives, executables) is refused. [2]"

    async def broken(texts: Sequence[str]) -> np.ndarray:
        raise ConnectionError("the hosted embedder is down")

    # The generator of last resort still answers, by words.
    assert await _answer(ExtractiveGenerator(Analyzer(), embed=broken), question, sources) == (
        by_words
    )


async def test_each_sentence_cites_its_source_and_a_cut_sentence_is_skipped() -> None:
    sources = [
        Source(
            1,
            "c1",
            "leave",
            "of the year before. Staff get 25 days of leave. Leave is booked in the portal.",
            position=3,  # not the document's first chunk: it starts inside a sentence
        )
    ]
    text = await _answer(ExtractiveGenerator(Analyzer()), "How many days of leave?", sources)
    assert text == "Staff get 25 days of leave. [1] Leave is booked in the portal. [1]"


async def test_a_sentence_cut_by_a_chunks_end_gives_way_to_the_whole_of_it() -> None:
    """One chunk ended inside a sentence ("... invisible at once;") and the next held all of
    it: the answer quoted both, the same words twice."""
    whole = "Deleting a document makes it invisible at once; its chunks go within seconds."
    sources = [
        Source(1, "c1", "ingest", f"Documents have versions. {whole[: whole.index(';') + 1]}"),
        Source(2, "c2", "ingest", f"{whole} Chunks are listed first.", position=1),
    ]
    question = "How soon is a deleted document invisible?"
    text = await _answer(ExtractiveGenerator(Analyzer()), question, sources)
    assert text == f"{whole} [2]"


async def test_a_sentence_is_scored_after_its_sources_title_and_headings() -> None:
    """ "Every response carries a strict policy" says nothing of a playground by itself; under
    "Playground > Security" it answers a question about the playground's security."""
    sources = [
        Source(1, "c1", "readme", "Clients include a browser playground and a command line."),
        Source(
            2,
            "c2",
            "playground",
            "Every response carries a strict policy, so no other site may frame it.",
            title="Playground",
            heading="Security",
        ),
    ]
    embedded: list[str] = []

    async def embed(texts: Sequence[str]) -> np.ndarray:
        embedded.extend(texts)
        topics = [("playground",), ("security", "frame", "iframe")]
        rows = [
            [float(any(t in x.lower() for t in topic)) + 0.01 for topic in topics] for x in texts
        ]
        return np.asarray(rows, dtype=np.float32)

    question = "Is the playground safe from being framed in an iframe, security-wise?"
    text = await _answer(ExtractiveGenerator(Analyzer(), embed=embed), question, sources)
    assert text == "Every response carries a strict policy, so no other site may frame it. [2]"
    assert (
        "Playground > Security\nEvery response carries a strict policy, so no other site may "
        "frame it." in embedded
    )


async def test_the_answer_weighs_what_retrieval_found_of_each_document() -> None:
    """Asked how soon a deleted document stops showing up, a sessions page's "DELETE forgets
    them" scored as well as the ingest page's answer, though retrieval found four passages of
    the ingest page: the answer quoted the sessions page."""
    sources = [
        Source(1, "c1", "sessions", "Alpha beta gamma delta one. Alpha beta gamma delta two."),
        Source(2, "c2", "ingest", "Alpha beta gamma delta three. Alpha beta gamma delta four."),
        *[Source(n, f"c{n}", "ingest", "Nothing here to see.", position=n) for n in (3, 4, 5)],
    ]
    scores = {"one": 0.9, "two": 0.8, "three": 0.9, "four": 0.8}

    text = await _answer(
        ExtractiveGenerator(Analyzer(), embed=_similar(scores)), "Alpha beta?", sources
    )
    # Ranked 2nd to 5th (1/2 + 1/3 + 1/4 + 1/5) counts more than ranked 1st, once.
    assert text == "Alpha beta gamma delta three. [2] Alpha beta gamma delta four. [2]"


LAYOUT_SOURCE = """To revoke a key from a script:

```bash
rag keys revoke 42
```

Once revoked:

- a revoked key stops working within a second on every gateway;
- a revoked key can't be restored, so create a new key instead.
"""

INLINE_SOURCE = """Keys are revoked with **`rag keys revoke <id>`**, as the
[gateway guide](gateway.md#keys) says. ![the flow](img/keys.png) <!-- keys:end -->

<!-- a comment
over lines: revoke keys -->
Revoking keys is also in the [playground](https://example.org/play) and
[the admin guide](admin.md), which explains `revoke
"""


async def test_an_extractive_answer_keeps_its_markdown_layout() -> None:
    """Answers collapsed onto one line: a lead-in lost the command it introduced and list
    items ran together."""
    sources = [Source(1, "c1", "gateway", LAYOUT_SOURCE)]
    text = await _answer(ExtractiveGenerator(Analyzer()), "How do I revoke keys?", sources)
    assert text == (
        "To revoke a key from a script: [1]\n\n```bash\nrag keys revoke 42\n```\n\n"
        "- a revoked key stops working within a second on every gateway; [1]\n"
        "- a revoked key can't be restored, so create a new key instead. [1]"
    )


async def test_an_extractive_answer_holds_no_images_comments_or_dead_links() -> None:
    """Images, relative links and HTML comments leaked into a chat window."""
    sources = [Source(1, "c1", "gateway", INLINE_SOURCE, source="docs/gateway.md")]
    text = await _answer(ExtractiveGenerator(Analyzer()), "How do I revoke keys?", sources)
    assert text == (
        "Keys are revoked with **`rag keys revoke <id>`**, as the gateway guide says. [1]\n\n"
        "Revoking keys is also in the [playground](https://example.org/play) and the admin "
        "guide, which explains revoke [1]"
    )
    # Relative links resolve against a web page's address.
    web = [Source(1, "c1", "gateway", INLINE_SOURCE, source="https://example.org/docs/keys.html")]
    text = await _answer(ExtractiveGenerator(Analyzer()), "How do I revoke keys?", web)
    assert "[gateway guide](https://example.org/docs/gateway.md#keys)" in text


async def test_a_lead_in_whose_block_is_not_in_the_answer_is_left_out() -> None:
    """ "To revoke a key:" with nothing after it (its block too long to bring) dangled."""
    long_block = "```\n" + "\n".join(f"step {i}" for i in range(40)) + "\n```"
    source = f"Keys can be revoked at any time by an admin.\n\nTo revoke a key:\n\n{long_block}\n"
    text = await _answer(
        ExtractiveGenerator(Analyzer()), "How do I revoke a key?", [Source(1, "c", "d", source)]
    )
    assert text == "Keys can be revoked at any time by an admin. [1]"


async def test_a_follow_ups_sentences_are_scored_after_the_conversation() -> None:
    """ "for how long?" shares no word with the sentence that answers it after "Are answers
    cached?"; scored alone, the answer was the sentence that happened to say "long"."""
    sources = [
        Source(1, "c1", "query", "Answers are cached in Redis for an hour by default."),
        Source(2, "c2", "ingest", "A long document is split into chunks of 200 tokens."),
    ]
    history = [
        Message("user", "Are answers cached?"),
        Message("assistant", "Yes. [1]"),
    ]
    generator = ExtractiveGenerator(Analyzer())
    text = "".join([p async for p in generator.answer("for how long?", sources, history, Usage())])
    assert text == "Answers are cached in Redis for an hour by default. [1]"
    alone = ExtractiveGenerator(Analyzer(), history_turns=0)
    text = "".join([p async for p in alone.answer("for how long?", sources, history, Usage())])
    assert text.startswith("A long document")


async def test_a_question_no_sentence_comes_near_is_not_answered_with_quotes() -> None:
    """Asked something the documents do not cover, the generator quoted whatever sentences
    were least unrelated and cited them; below the model's similarity level it says that the
    documents do not answer, and cites nothing."""
    sources = [
        Source(1, "c1", "leave", "Alpha beta gamma one. Alpha beta gamma two."),
        Source(2, "c2", "expenses", "Alpha beta gamma three."),
    ]
    embed = _similar({"one": 0.31, "two": 0.2, "three": 0.29})
    question = "Alpha gamma?"
    text = await _answer(ExtractiveGenerator(Analyzer(), embed=embed), question, sources)
    assert text == "Alpha beta gamma one. [1] Alpha beta gamma two. [1]"  # 0: always answers
    near = ExtractiveGenerator(Analyzer(), embed=embed, min_similarity=0.3)
    assert await _answer(near, question, sources) == text  # the best, 0.31, is near enough
    far = ExtractiveGenerator(Analyzer(), embed=embed, min_similarity=0.32)
    assert await _answer(far, question, sources) == NOT_ANSWERED
    assert cited_numbers(NOT_ANSWERED, sources) == []

    async def broken(texts: Sequence[str]) -> np.ndarray:
        raise ConnectionError("the hosted embedder is down")

    # 0 answers always, even where every similarity is below it (cosines can be negative).
    opposed = _similar({"one": -0.2, "two": -0.3, "three": -0.25})
    always = ExtractiveGenerator(Analyzer(), embed=opposed)
    assert (await _answer(always, question, sources)).startswith("Alpha beta gamma one. [1]")
    # Without similarities there is nothing to judge by: it answers by words.
    by_words = ExtractiveGenerator(Analyzer(), embed=broken, min_similarity=0.9)
    assert (await _answer(by_words, question, sources)).endswith("[1]")


async def test_the_answer_that_the_documents_do_not_answer_is_the_operators_text() -> None:
    """It was English whatever the documents' language (ANSWER_NOT_ANSWERED)."""
    sources = [Source(1, "c1", "congés", "Les salariés ont vingt-cinq jours de congés.")]
    embed = _similar({"congés": 0.1})
    french = "Les documents trouvés ne répondent pas à cette question."
    generator = ExtractiveGenerator(
        Analyzer(), embed=embed, min_similarity=0.25, not_answered=french
    )
    assert await _answer(generator, "Combien de jours de télétravail ?", sources) == french


async def test_a_documents_markup_reaches_the_answer_as_text() -> None:
    """Links whose brackets defeated the patterns (a javascript: or data: target), images
    two brackets deep (a tracking pixel), raw HTML and autolinks, and escaped or entity
    citation look-alikes came into answers as they were, live in any Markdown renderer (chat
    frontends render answers)."""
    from markdown_it import MarkdownIt

    hostile = [
        "The remote policy is [remote work policy [v2]](javascript:alert(document.cookie)).",
        "The parking map is [the parking map [pdf]](data:text/html;base64,PHNjcmlwdD4=).",
        "The portal is at [employee portal](javascript:alert[0]) for all staff.",
        "The policy pixel ![x [a [b]]](https://evil.example/pixel.png?leak=1) tracks staff.",
        'The policy says <a href="javascript:alert(1)" onclick="alert(2)">click</a> now.',
        "The policy svg <svg onload=alert(1)> and <iframe src=https://evil.example> load.",
        "The policy autolink <javascript:alert(1)> is there.",
        "The policy cites \\[2\\] and &#91;3&#93; as sources.",
        # An unbalanced "(" in a kept link's target: the rest was live Markdown and HTML.
        "The policy is at [a](https://x(<style>*{display:none}</style>) now.",
        "The policy is at [a](https://x(![[[b]]](https://evil.example/p.png) now.",
        "The policy is at [a](https://x([[b]](javascript:alert%281%29) now.",
        # Fences a renderer does not read as fences (our split did): the code was live.
        "The policy command is this:\n```a`\n<img src=x onerror=alert(1)>\n```",
        "The policy command is this:\n\n    ```\n    <img src=x onerror=alert(1)>\n    ```",
        "The policy command is this:\n\u00a0```\n<img src=x onerror=alert(1)>\n```",
    ]
    sources = [Source(1, f"c{i}", f"d{i}", text) for i, text in enumerate(hostile)]
    generator = ExtractiveGenerator(Analyzer())
    for source in sources:
        answer = await _answer(generator, "What does the policy say?", [source])
        html = MarkdownIt("commonmark").render(answer)
        for live in ("<a href", "<img", "<svg", "<iframe", "<style"):  # live elements
            assert live not in html, (source.text, answer, html)
        assert "[2]" not in html.replace("[1]", ""), html  # only its own marker cites
        assert "[3]" not in html, html
    # Links a reader can follow, code spans and plain comparisons stay as they were.
    kept = Source(
        1, "c", "d", "The guide is at [the guide](https://example.com/g) and `<b>` if a < b."
    )
    answer = await _answer(generator, "Where is the guide?", [kept])
    html = MarkdownIt("commonmark").render(answer)
    assert '<a href="https://example.com/g">the guide</a>' in html
    assert "<code>&lt;b&gt;</code>" in html
    assert "a &lt; b" in html


async def test_sources_without_a_sentence_to_quote_are_said_not_to_answer() -> None:
    """A table or a code block alone gave the answer "" (an empty chat message)."""
    sources = [
        Source(1, "c1", "grades", "| grade | annual leave days |\n|---|---|\n| senior | 30 |"),
        Source(2, "c2", "code", "```python\nleave = {'senior': 30}\n```"),
    ]
    question = "How many annual leave days does a senior grade get?"
    assert await _answer(ExtractiveGenerator(Analyzer()), question, sources) == NOT_ANSWERED
