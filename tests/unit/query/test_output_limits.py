"""max_tokens and stop on the OpenAI route, for any generator: the answer is cut as it
streams, and a stop sequence split across pieces is never sent."""

from __future__ import annotations

import pytest
from rag_core.errors import InvalidInput
from rag_core.tokens import count_tokens
from rag_query.openai_api.limits import (
    OutputLimit,
    refuse_unsupported,
    stop_sequences,
    token_limit,
)

ANSWER = "Keys are stored as hashes. [1] They are shown once. [2] Revoke them any time. [1]"


def _through(limit: OutputLimit, pieces: list[str]) -> str:
    return "".join(limit.feed(p) for p in pieces) + limit.close()


def _words(text: str) -> list[str]:
    return [w + " " for w in text.split(" ")]


def test_no_limit_passes_everything_through() -> None:
    limit = OutputLimit(None, [])
    assert _through(limit, _words(ANSWER)).rstrip() == ANSWER
    assert limit.finish_reason == "stop"


@pytest.mark.parametrize("pieces", [[ANSWER], _words(ANSWER), list(ANSWER)])
def test_a_stop_sequence_ends_the_answer_before_it_wherever_the_pieces_split(
    pieces: list[str],
) -> None:
    limit = OutputLimit(None, ["[2]", "never"])
    assert _through(limit, pieces) == "Keys are stored as hashes. [1] They are shown once. "
    assert limit.finish_reason == "stop"


@pytest.mark.parametrize("pieces", [[ANSWER], _words(ANSWER), list(ANSWER)])
def test_max_tokens_cuts_at_that_many_tokens_and_says_length(pieces: list[str]) -> None:
    limit = OutputLimit(5, [])
    sent = ""
    for piece in pieces:
        sent += limit.feed(piece)
        assert count_tokens(sent) <= 5  # never more than asked, even on the way
    sent += limit.close()
    assert sent == "Keys are stored as hash"  # "hash", "##es": a token limit cuts words too
    assert count_tokens(sent) == 5
    assert limit.finish_reason == "length"


def test_the_earlier_of_a_stop_and_the_token_limit_wins() -> None:
    limit = OutputLimit(50, ["."])
    assert _through(limit, _words(ANSWER)) == "Keys are stored as hashes"
    assert limit.finish_reason == "stop"
    exact = OutputLimit(count_tokens(ANSWER), [])
    assert _through(exact, [ANSWER]) == ANSWER
    assert exact.finish_reason == "stop"  # it ended by itself, exactly at the limit


def test_what_cannot_be_honoured_is_refused_naming_the_parameter() -> None:
    for call, field in (
        (lambda: refuse_unsupported(2, None), "n"),
        (lambda: refuse_unsupported(None, [{"type": "function"}]), "tools"),
        (lambda: stop_sequences(["a", "b", "c", "d", "e"]), "stop"),
        (lambda: stop_sequences(""), "stop"),
        (lambda: token_limit(max_completion_tokens=0, max_tokens=None), "max_completion_tokens"),
        (lambda: token_limit(max_completion_tokens=None, max_tokens=-1), "max_tokens"),
    ):
        with pytest.raises(InvalidInput) as refused:
            call()
        assert refused.value.extra["errors"][0]["field"] == field
    refuse_unsupported(1, [])
    assert stop_sequences("\n") == ["\n"]
    assert token_limit(max_completion_tokens=None, max_tokens=7) == 7
    assert token_limit(max_completion_tokens=3, max_tokens=7) == 3
