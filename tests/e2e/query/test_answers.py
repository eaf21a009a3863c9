"""Answers with citations through the real query service: the extractive default, the LLM
generators against recorded responses, streaming, fallback, strategies, reranking, sessions
and the answer cache."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from rag_core.tokens import count_tokens
from rag_devstack import NativeStack

from tests.support.ingest import IngestClient
from tests.support.metrics import value
from tests.support.query import QueryClient
from tests.support.replay import Replay

pytestmark = pytest.mark.e2e


def test_extractive_answer_cites_the_sentences_it_quotes(query: QueryClient, handbook: str) -> None:
    result = query.answer(handbook, "How many days of annual leave do staff get?", cache=False)
    assert result["generator"] == "extractive"
    assert "25 days of annual leave" in result["answer"]
    first = result["sources"][0]
    assert first["document_id"] == "leave"
    assert first["number"] == 1
    assert "25 days" in first["quote"]
    assert "[1]" in result["answer"]
    assert result["cited"] == [1]
    # Every sentence of the answer is taken from the source it cites.
    sentence = result["answer"].split(" [1]")[0].split(". ")[-1]
    assert sentence in first["quote"]


def test_nothing_found_is_said_plainly(query: QueryClient, handbook: str) -> None:
    result = query.answer(handbook, "annual leave", filter={"year": 1990})
    assert result["sources"] == []
    assert result["answer"].startswith("No relevant documents")
    assert result["generator"] == "none"


def test_stream_sends_sources_then_tokens_then_done(query: QueryClient, handbook: str) -> None:
    events = query.stream(handbook, "What must laptops use?", cache=False)
    names = [e.event for e in events]
    assert names[0] == "sources"
    assert names[-1] == "done"
    assert set(names[1:-1]) == {"token"}
    assert len(names) > 3, "the answer arrives in pieces"
    text = "".join(e.data["text"] for e in events if e.event == "token")
    done = events[-1].data
    assert text.strip() == done["answer"]
    assert "full-disk encryption" in text
    assert events[0].data["sources"][0]["document_id"] == "laptops"
    assert done["usage"]["output_tokens"] > 0
    assert {"retrieve_ms", "generate_ms"} <= set(done["timings"])


def test_openai_generator_streams_the_models_answer(
    query: QueryClient, handbook: str, llm: Replay
) -> None:
    llm.script((200, "openai_chat_answer.sse"))
    events = query.stream(handbook, "How much leave?", generator="openai", cache=False)
    assert "".join(e.data["text"] for e in events if e.event == "token") == (
        "Staff get 25 days of annual leave [1]."
    )
    done = events[-1].data
    assert (done["generator"], done["cited"]) == ("openai", [1])
    assert done["usage"] == {"input_tokens": 180, "output_tokens": 12}
    [request] = llm.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    messages = request["json"]["messages"]
    assert messages[0]["role"] == "system"
    assert "[1] (" in messages[-1]["content"]
    assert "Question: How much leave?" in messages[-1]["content"]


def test_a_failure_mid_stream_becomes_an_error_event(
    query: QueryClient, handbook: str, llm: Replay
) -> None:
    llm.script((200, "openai_chat_error_midstream.sse"))
    events = query.stream(handbook, "How much leave?", generator="openai", cache=False)
    assert events[0].event == "sources"
    assert events[-1].event == "error"
    assert "server had an error" in events[-1].data["message"]
    assert "Staff get" in "".join(e.data["text"] for e in events if e.event == "token")


def test_a_failing_provider_falls_back_to_extractive(
    query: QueryClient, handbook: str, llm: Replay
) -> None:
    llm.script((500, "error_500.json"))
    result = query.answer(handbook, "What must laptops use?", generator="openai", cache=False)
    assert result["generator"] == "extractive"
    assert "openai" in result["fallback_from"][0]
    assert "full-disk encryption" in result["answer"]


def test_a_provider_that_hangs_falls_back_within_the_timeout(
    query: QueryClient, handbook: str, llm: Replay
) -> None:
    llm.script((200, "openai_chat_condense.json"), hang_seconds=30)
    started = time.monotonic()
    result = query.answer(handbook, "What must laptops use?", generator="openai", cache=False)
    assert time.monotonic() - started < 10  # LLM_TIMEOUT_SECONDS is 2 here, no retries
    assert result["generator"] == "extractive"
    assert "openai" in result["fallback_from"][0]
    assert "full-disk encryption" in result["answer"]


def test_a_stream_from_a_provider_that_hangs_ends_never_hangs(
    query: QueryClient, handbook: str, llm: Replay
) -> None:
    llm.script((200, "openai_chat_answer.sse"), hang_seconds=30)
    started = time.monotonic()
    events = query.stream(handbook, "How much leave?", generator="openai", cache=False)
    assert time.monotonic() - started < 10
    assert events[0].event == "sources"
    assert events[-1].event in ("done", "error")
    if events[-1].event == "done":  # fell back before the first token
        assert "Staff get" in "".join(e.data["text"] for e in events if e.event == "token")
    llm.script((500, "error_500.json"))


def test_google_generator(query: QueryClient, handbook: str, llm: Replay) -> None:
    llm.script((200, "google_stream_answer.sse"))
    result = query.answer(handbook, "What must laptops use?", generator="google", cache=False)
    assert result["answer"] == "Laptops must use full-disk encryption [1]."
    assert result["usage"] == {"input_tokens": 150, "output_tokens": 9}
    [request] = llm.requests
    assert "streamGenerateContent" in request["path"]
    assert request["headers"]["x-goog-api-key"] == "g-test"
    assert "Question: What must laptops use?" in json.dumps(request["json"])


@pytest.mark.parametrize(
    ("strategy", "recorded", "searches"),
    [
        ("multi_query", "openai_chat_multi_query.json", 4),
        ("hyde", "openai_chat_hyde.json", 2),
        ("step_back", "openai_chat_step_back.json", 2),
    ],
)
def test_query_strategies_rewrite_with_the_llm(
    query: QueryClient, handbook: str, llm: Replay, strategy: str, recorded: str, searches: int
) -> None:
    llm.script((200, recorded))
    result = query.answer(handbook, "How much leave do I get?", strategy=strategy, cache=False)
    assert len(result["rewrites"]) == searches - 1
    assert result["sources"][0]["document_id"] == "leave"
    [rewrite] = llm.requests  # the answer itself is extractive here
    assert "How much leave do I get?" in rewrite["json"]["messages"][0]["content"]


def test_rerankers_reorder_the_candidates(query: QueryClient, handbook: str, llm: Replay) -> None:
    plain = query.answer(handbook, "laptops leave", top_k=2, cache=False)
    first, second = (s["document_id"] for s in plain["sources"][:2])
    llm.script((200, "openai_chat_rerank.json"))  # "[2, 1]"
    reranked = query.answer(handbook, "laptops leave", top_k=2, rerank="llm", cache=False)
    assert [s["document_id"] for s in reranked["sources"][:2]] == [second, first]
    llm.script((200, "cohere_rerank.json"))  # index 1 first
    cohere = query.answer(handbook, "laptops leave", top_k=2, rerank="cohere", cache=False)
    assert cohere["sources"][0]["document_id"] == plain["sources"][1]["document_id"]
    [request] = llm.requests
    assert request["path"] == "/v2/rerank"
    assert request["headers"]["authorization"] == "Bearer c-test"


def test_unconfigured_or_unknown_options_are_422(query: QueryClient, handbook: str) -> None:
    response = query.ask(handbook, "x", generator="gpt")
    assert response.status_code == 400  # not one of the allowed values
    # "." and ".." were sessions their GET and DELETE could never reach (dot segments); "a\n"
    # passed the check's "$".
    for session_id in ("bad id!", ".", "..", "s-1\n"):
        response = query.ask(handbook, "x", session_id=session_id)
        assert response.status_code == 422, session_id
        assert response.json()["errors"][0]["field"] == "session_id"


def test_sessions_keep_the_conversation_and_make_follow_ups_standalone(
    query: QueryClient, handbook: str, llm: Replay
) -> None:
    first = query.answer(handbook, "What must laptops use?", session_id="s-1")
    assert first["session_id"] == "s-1"
    llm.script((200, "openai_chat_condense.json"))  # "How are lost laptops reported?"
    follow = query.answer(handbook, "And if I lose one?", session_id="s-1", generator="extractive")
    assert follow["standalone_question"] == "How are lost laptops reported?"
    assert "service desk" in follow["answer"]
    [condense] = llm.requests
    assert "What must laptops use?" in condense["json"]["messages"][0]["content"]
    turns = query.http.get("/v1/sessions/s-1").json()["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert query.http.delete("/v1/sessions/s-1").status_code == 200
    assert query.http.get("/v1/sessions/s-1").status_code == 404


def test_answers_are_cached_until_the_collection_changes(
    ingest: IngestClient, query: QueryClient
) -> None:
    name = ingest.create_collection()
    ingest.wait(ingest.ingest_ok(name, [{"id": "menu", "text": "Lunch is soup on Mondays."}]))
    query.wait_for(name, "soup", "menu")
    first = query.answer(name, "What is for lunch on Monday?")
    again = query.answer(name, "  what is for LUNCH on monday? ")
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["answer"] == first["answer"]
    response = ingest.http.put(
        f"/v1/collections/{name}/documents/menu", json={"text": "Lunch is pasta on Mondays."}
    )
    ingest.wait([response.json()["jobs"][0]["job_id"]])
    query.wait_for(name, "pasta", "menu")
    changed = query.answer(name, "What is for lunch on Monday?")
    assert changed["cached"] is False
    assert "pasta" in changed["answer"]
    assert "soup" not in changed["answer"]
    assert query.answer(name, "What is for lunch on Monday?", cache=False)["cached"] is False


def test_a_cached_answer_streams_word_by_word_like_a_fresh_one_and_counts_tokens(
    ingest: IngestClient, query: QueryClient
) -> None:
    """A cached answer used to come as one token event; usage counted words, not tokens."""
    name = ingest.create_collection()
    text = "Lunch is soup on Mondays, served with homemade sourdough. Dinner is fish on Fridays."
    ingest.wait(ingest.ingest_ok(name, [{"id": "menu", "text": text}]))
    query.wait_for(name, "soup", "menu")
    streams = [query.stream(name, "What is for lunch on Monday?") for _ in range(2)]
    fresh, cached = ([e.data["text"] for e in s if e.event == "token"] for s in streams)
    assert [s[-1].data["cached"] for s in streams] == [False, True]
    assert cached == fresh
    assert len(cached) > 5
    done = streams[0][-1].data
    assert done["usage"]["output_tokens"] == count_tokens(done["answer"])
    assert done["usage"]["output_tokens"] > len(done["answer"].split())  # "sourdough" is 3
    assert done["usage"]["input_tokens"] == count_tokens(text)


def test_metrics_count_retrieval_generation_cache_and_reranking(
    query_stack: NativeStack, query: QueryClient, handbook: str, llm: Replay
) -> None:
    url = f"{query_stack.health_url('query')}/metrics"
    before = httpx.get(url).text
    query.answer(handbook, "When does the car park open?", cache=False)
    query.answer(handbook, "car park hours")
    query.answer(handbook, "car park hours")  # a cache hit
    query.answer(handbook, "anything", filter={"year": 1800}, cache=False)  # nothing found
    query.answer(handbook, "How long should a steak rest after the grill?", cache=False)
    llm.script((200, "cohere_rerank.json"))
    query.answer(handbook, "parking", rerank="cohere", cache=False)
    after = httpx.get(url).text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("rag_query_retrieval_seconds_count", mode="hybrid") >= 4
    assert delta("rag_query_generation_seconds_count", generator="extractive", outcome="ok") >= 3
    assert delta("rag_query_answer_cache_total", outcome="hit") == 1
    assert delta("rag_query_answer_cache_total", outcome="miss") >= 1
    assert delta("rag_query_empty_retrievals_total", mode="hybrid") == 1
    # Questions the collection does not cover: nothing found, or nothing that answers.
    assert delta("rag_query_uncited_answers_total", generator="none") == 1
    assert delta("rag_query_uncited_answers_total", generator="extractive") == 1
    assert delta("rag_query_rerank_seconds_count", reranker="cohere") == 1
    assert delta("rag_query_llm_tokens_total", generator="extractive", direction="output") > 0


def test_a_collection_deleted_and_created_again_never_serves_the_old_answers(
    ingest: IngestClient, query: QueryClient
) -> None:
    """The version starts at 0 again after a re-create: the cache once answered from the
    deleted collection, quotes and all, with ``cached: true``."""
    name = ingest.create_collection()
    ingest.wait(ingest.ingest_ok(name, [{"id": "menu", "text": "Lunch is soup on Mondays."}]))
    query.wait_for(name, "soup", "menu")
    assert query.answer(name, "What is for lunch on Monday?")["cached"] is False
    assert query.answer(name, "What is for lunch on Monday?")["cached"] is True

    assert ingest.http.delete(f"/v1/collections/{name}").status_code == 200
    ingest.create_collection(name)
    ingest.wait(ingest.ingest_ok(name, [{"id": "menu", "text": "Lunch is curry on Mondays."}]))
    query.wait_for(name, "curry", "menu")
    again = query.answer(name, "What is for lunch on Monday?")
    assert again["cached"] is False
    assert "curry" in again["answer"]
    assert "soup" not in again["answer"]


def test_a_cached_answer_is_given_with_the_askers_session_and_kept_in_it(
    query: QueryClient, handbook: str
) -> None:
    """A cached answer carried the session id of whoever's answer was cached, to every later
    asker, who could then read and continue that conversation; a cached or nothing-found
    answer was never kept in the asker's session unless streamed."""
    question = "Where must expenses be submitted with receipts, and by when?"
    first = query.answer(handbook, question, session_id="alice-private-1")
    assert first["session_id"] == "alice-private-1"
    assert not first["cached"]
    anyone = query.answer(handbook, question)
    assert anyone["cached"]
    assert "session_id" not in anyone
    bob = query.answer(handbook, question, session_id="bob-1")
    assert bob["cached"]
    assert bob["session_id"] == "bob-1"
    streamed = query.stream(handbook, question, session_id="carol-1")
    assert streamed[-1].data["cached"]
    assert streamed[-1].data["session_id"] == "carol-1"
    for session in ("bob-1", "carol-1"):
        turns = query.http.get(f"/v1/sessions/{session}").json()["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"], session
        assert turns[1]["content"] == first["answer"]
    nothing = query.answer(handbook, "annual leave", filter={"year": 1990}, session_id="dave-1")
    assert nothing["sources"] == []
    turns = query.http.get("/v1/sessions/dave-1").json()["turns"]
    assert turns[1]["content"] == nothing["answer"]
    alice = query.http.get("/v1/sessions/alice-private-1").json()["turns"]
    assert len(alice) == 2  # nobody else's turns


def test_a_session_stays_with_the_collection_it_was_started_on(
    ingest: IngestClient, query: QueryClient, handbook: str
) -> None:
    other = ingest.create_collection()
    ingest.wait(ingest.ingest_ok(other, [{"id": "menu", "text": "Lunch is soup on Mondays."}]))
    query.wait_for(other, "soup", "menu")
    query.answer(handbook, "What must laptops use?", session_id="bound-1", cache=False)
    session = query.http.get("/v1/sessions/bound-1").json()
    assert session["collection"] == handbook

    # Continuing it on another collection would show that collection the first one's text.
    refused = query.ask(other, "And what is for lunch?", session_id="bound-1")
    assert refused.status_code == 409, refused.text
    assert refused.json()["errors"][0]["field"] == "session_id"
    assert handbook not in refused.text
    turns = query.http.get("/v1/sessions/bound-1").json()["turns"]
    assert len(turns) == 2, "nothing was appended"
    assert query.http.delete("/v1/sessions/bound-1").status_code == 200
    # Forgotten, the id is free for any collection again.
    assert query.answer(other, "What is for lunch?", session_id="bound-1")["session_id"]
    assert query.http.get("/v1/sessions/bound-1").json()["collection"] == other
