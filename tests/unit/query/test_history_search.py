"""A follow-up is searched with the conversation when it refers back to it, and alone when it
stands alone."""

from __future__ import annotations

from rag_core.tokens import count_tokens
from rag_query.generation.base import Message
from rag_query.retrieval.history import history_queries, refers_back, with_conversation

KEYS = [
    Message("user", "How are API keys stored?"),
    Message("assistant", "Redis keeps only a SHA-256 of the secret. [1]"),
]


def test_a_follow_up_that_refers_back_is_searched_after_the_users_turns() -> None:
    """ "And how do I revoke one?" was searched alone and found text about sessions."""
    assert history_queries("And how do I revoke one?", KEYS) == [
        ("And how do I revoke one?", 1.0),
        ("How are API keys stored? And how do I revoke one?", 2.0),  # not the answer's words
    ]
    for follow_up in ("for how long?", "what about disk?", "Can it be restricted further?"):
        assert refers_back(follow_up), follow_up


def test_a_question_that_stands_alone_is_searched_alone() -> None:
    question = "Which alerts come with the Prometheus configuration?"
    assert not refers_back(question)
    assert history_queries(question, KEYS) == [(question, 1.0)]
    assert history_queries("for how long?", []) == [("for how long?", 1.0)]  # nothing before


def test_only_the_last_turns_are_searched_and_zero_turns_turns_it_off() -> None:
    history = [Message("user", f"question {i} about keys") for i in range(5)]
    [_, (query, _)] = history_queries("and then?", history, turns=2)
    assert query == "question 3 about keys question 4 about keys and then?"
    assert history_queries("and then?", history, turns=0) == [("and then?", 1.0)]


def test_a_follow_up_after_long_turns_stays_within_what_the_embedder_reads() -> None:
    """The earlier turns (up to 2,000 characters) came first, and all-MiniLM-L6-v2 reads the
    first 254 tokens: after a pasted paragraph, "and how do I revoke one?" was cut off, and
    the search and the answer's sentences went by the paragraph alone."""
    pasted = "Our security team asked how the gateway keeps API keys at rest. " * 30
    history = [Message("user", pasted), Message("assistant", "Only a SHA-256. [1]")]
    together = with_conversation("and how do I revoke one?", history)
    assert together is not None
    assert together.endswith("API keys at rest. and how do I revoke one?")
    assert count_tokens(together) <= 254 - 2  # [CLS] and [SEP]
    assert count_tokens(together) > 128  # as much of the conversation as fits


def test_a_long_follow_up_keeps_its_own_words_within_the_window() -> None:
    """A message that refers back and is long itself ("... and is it kept ...") left less room
    than the earlier turns took: its end fell outside what the embedder reads."""
    pasted = "Our security team asked how the gateway keeps API keys at rest. " * 30
    history = [Message("user", pasted)]
    question = "Thanks. " * 80 + "And is it kept encrypted?"
    together = with_conversation(question, history)
    assert together is not None
    assert together.endswith(question)
    assert count_tokens(together) <= 254
    # A message that fills the window alone is searched alone.
    assert with_conversation("Is it? " * 100, history) is None
