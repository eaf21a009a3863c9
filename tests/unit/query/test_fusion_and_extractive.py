"""Rank fusion, MMR, the extractive generator and prompt overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rag_query.generation.base import Usage
from rag_query.generation.extractive import ExtractiveGenerator, split_sentences
from rag_query.generation.prompts import Prompts
from rag_query.generation.sources import Source, cited_numbers, format_sources
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.fusion import fuse_rankings, select_diverse


def test_rrf_rewards_agreement_and_weights_shift_it() -> None:
    rankings = {"dense": ["a", "b", "c"], "lexical": ["b", "d", "a"]}
    fused = [item for item, _ in fuse_rankings(rankings, {}, 60)]
    assert fused[:2] == ["b", "a"]  # found by both
    lexical_heavy = fuse_rankings(rankings, {"dense": 0.0, "lexical": 1.0}, 60)
    assert [item for item, score in lexical_heavy if score > 0] == ["b", "d", "a"]
    assert fuse_rankings({"x": ["b", "a"], "y": ["a", "b"]}, {}, 60)[0][0] == "a"  # ties: id


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


def test_sentences_split_at_ends_not_at_abbreviated_numbers() -> None:
    assert split_sentences("It costs 2.5 euros. Next one! Last?") == [
        "It costs 2.5 euros.",
        "Next one!",
        "Last?",
    ]


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
