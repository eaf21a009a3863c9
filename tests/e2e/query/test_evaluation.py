"""The evaluation API on a small BEIR-format set: retrieval metrics, answer metrics, BEIR file
upload, background runs with progress, and the LLM judge on a recorded response."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from rag_devstack import NativeStack, free_port, http_ok

from tests.support.eval import MEDICAL_CORPUS, MEDICAL_QRELS, MEDICAL_QUERIES
from tests.support.ingest import IngestClient
from tests.support.query import QueryClient
from tests.support.replay import Replay

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def medical(ingest: IngestClient, query: QueryClient) -> str:
    name = ingest.create_collection()
    ingest.wait(ingest.ingest_ok(name, [{"id": k, "text": v} for k, v in MEDICAL_CORPUS.items()]))
    query.wait_for(name, "memory consolidation", "d5")
    return name


def test_retrieval_and_answer_metrics(query: QueryClient, medical: str) -> None:
    cases = [
        {
            "query": "Does aspirin prevent heart attacks?",
            "relevant": ["d1"],
            "expected_answer": "Aspirin reduces the risk of heart attacks in adults over fifty.",
        },
        {"query": "Is vitamin D deficiency common in winter?", "relevant": {"d2": 2}},
    ]
    response = query.http.post(
        "/v1/evaluate", json={"collection": medical, "cases": cases, "answers": True}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["cases"] == result["judged_cases"] == 2
    retrieval = result["retrieval"]
    assert set(retrieval) == {"nDCG@10", "R@10", "R@100", "RR@10"}
    assert retrieval["RR@10"] == 1.0  # the relevant document is first for both
    answers = result["answers"]
    assert answers["citation_precision"] == 1.0
    assert answers["answer_support"] == 1.0  # extractive: every sentence is its source's
    assert answers["exact_match"] == 1.0
    assert answers["fuzzy_match"] == 1.0
    assert answers["answer_recall"] == 1.0
    assert answers["faithfulness"] is None  # not asked for
    assert result["per_case"][0]["retrieved"][0] == "d1"


def test_an_answer_is_scored_against_the_best_of_several_expected_answers(
    query: QueryClient, medical: str
) -> None:
    """A question may have several right answers (another document says it too): the answer
    scores its best against them, as SQuAD scores several gold answers."""
    right = "Aspirin reduces the risk of heart attacks in adults over fifty."
    other = "Bananas are rich in potassium and grow in warm climates."

    def scored(expected: str | list[str]) -> dict[str, float]:
        case = {"query": "Does aspirin prevent heart attacks?", "expected_answer": expected}
        body = {"collection": medical, "cases": [case], "answers": True}
        response = query.http.post("/v1/evaluate", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json()["per_case"][0])

    alone = scored(other)
    assert alone["answer_recall"] < 0.5
    assert alone["exact_match"] == 0.0
    alone_right = scored(right)
    for expected in ([other, right], [right, other]):
        both = scored(expected)
        assert both["answer"] == alone_right["answer"]
        assert (both["exact_match"], both["fuzzy_match"], both["answer_recall"]) == (1.0, 1.0, 1.0)


def test_beir_files_sync_and_in_the_background(query: QueryClient, medical: str) -> None:
    files = {
        "queries": (
            "queries.jsonl",
            "\n".join(json.dumps(q) for q in MEDICAL_QUERIES).encode(),
            "application/jsonl",
        ),
        "qrels": ("test.tsv", MEDICAL_QRELS.encode(), "text/tab-separated-values"),
    }
    sync = query.http.post("/v1/evaluate/beir", files=files, data={"collection": medical})
    assert sync.status_code == 200, sync.text
    assert sync.json()["cases"] == 3  # q9 has no judgements
    assert sync.json()["retrieval"]["nDCG@10"] == 1.0
    started = query.http.post(
        "/v1/evaluate/beir", files=files, data={"collection": medical, "background": "true"}
    )
    assert started.status_code == 202, started.text
    status_url = started.json()["status_url"]
    deadline = time.monotonic() + 30
    while (record := query.http.get(status_url).json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert record["state"] == "succeeded", record
    assert record["progress"] == 1.0
    assert record["result"]["retrieval"] == sync.json()["retrieval"]


def test_the_llm_judge_scores_faithfulness(query: QueryClient, medical: str, llm: Replay) -> None:
    llm.script((200, "openai_chat_judge.json"))
    cases = [{"query": "Does coffee cause cancer?", "relevant": ["d4"]}]
    body = {"collection": medical, "cases": cases, "answers": True, "judge": True}
    result = query.http.post("/v1/evaluate", json=body).json()
    assert result["answers"]["faithfulness"] == 0.9
    [judge] = llm.requests
    assert "Rate how faithful" in judge["json"]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"cases": []}, 422, "cases"),
        ({"cases": [{"query": " "}]}, 422, "cases[0].query"),
        (
            {"cases": [{"query": "x"}, {"query": "y", "expected_answer": []}]},
            422,
            "cases[1].expected_answer",
        ),
        (
            {"cases": [{"query": " "}, {"query": "y", "expected_answer": []}]},
            422,
            "cases[0].query",  # the first bad case's first bad field
        ),
        ({"cases": [{"query": "x", "expected_answer": "  "}]}, 422, "cases[0].expected_answer"),
        ({"cases": [{"query": "x", "expected_answer": [""]}]}, 422, "cases[0].expected_answer[0]"),
        (
            {"cases": [{"query": "x", "expected_answer": ["a", " "]}]},
            422,
            "cases[0].expected_answer[1]",
        ),
        (
            {"cases": [{"query": "x", "expected_answer": ["a"] * 21}]},  # EVAL_MAX_EXPECTED_ANSWERS
            422,
            "cases[0].expected_answer",
        ),
        # More than EVAL_MAX_CASES (20,000): refused as a whole, before any case is read.
        ({"cases": [{"query": " "}] * 20_001}, 422, "cases"),
        ({"cases": [{"query": "x"}], "collection": "missing-one"}, 404, None),
        # Scored by id: two cases of one id were scored as one, "\u0000" as "".
        ({"cases": [{"query": "x", "id": "a"}, {"query": "y", "id": "a"}]}, 422, "cases[1].id"),
        ({"cases": [{"query": "x", "id": "q2"}, {"query": "y"}]}, 422, "cases[1].id"),
        ({"cases": [{"query": "x", "id": "\u0000"}]}, 422, "cases[0].id"),
        ({"cases": [{"query": "x" * 16_001}]}, 422, "cases[0].query"),  # MAX_QUERY_CHARS
    ],
)
def test_bad_evaluations_are_refused(
    query: QueryClient, medical: str, body: dict, status: int, field: str | None
) -> None:
    response = query.http.post("/v1/evaluate", json={"collection": medical, **body})
    assert response.status_code == status, response.text
    if field:
        assert response.json()["errors"][0]["field"] == field
    bad_qrels = query.http.post(
        "/v1/evaluate/beir",
        files={
            "queries": ("q.jsonl", b'{"_id": "q1", "text": "x"}', "application/jsonl"),
            "qrels": ("t.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\n", "text/plain"),
        },
        data={"collection": medical},
    )
    assert bad_qrels.status_code == 422
    assert bad_qrels.json()["errors"][0]["field"] == "qrels"


def test_judgements_whose_grades_crashed_the_scorer_are_refused(
    query: QueryClient, medical: str
) -> None:
    """trec_eval (pytrec_eval) takes memory in proportion to the highest relevance grade: a
    qrels line graded 3000000000 had the query service killed, one over 2**63 crashed it
    (SIGSEGV), and a grade of "²" (str.isdigit) or of 5,000 digits was a 500. Each is now a
    422 naming the field and EVAL_MAX_GRADE, and the service still answers."""
    for grade in ("3000000000", "-3000000000", "99999999999999999999", "²", "9" * 5000, "101"):
        refused = query.http.post(
            "/v1/evaluate/beir",
            files={
                "queries": ("q.jsonl", b'{"_id": "q1", "text": "coffee"}', "application/jsonl"),
                "qrels": ("t.tsv", f"q1\td4\t{grade}\n".encode(), "text/plain"),
            },
            data={"collection": medical},
        )
        assert refused.status_code == 422, (grade[:20], refused.text)
        assert refused.json()["errors"][0]["field"] == "qrels"
    assert "EVAL_MAX_GRADE" in refused.text
    for grade in (3_000_000_000, -3_000_000_000, 101):
        body = {"collection": medical, "cases": [{"query": "x", "relevant": {"d4": grade}}]}
        response = query.http.post("/v1/evaluate", json=body)
        assert response.status_code == 422, (grade, response.text)
        assert response.json()["errors"][0]["field"] == "cases[0].relevant"
    huge = {"collection": medical, "cases": [{"query": "x", "relevant": {"d4": 2**64}}]}
    assert query.http.post("/v1/evaluate", json=huge).status_code in (400, 422)
    # The bounds themselves are grades, and the service is up.
    cases = [{"query": "Does coffee cause cancer?", "relevant": {"d4": 100, "d1": 0}}]
    scored = query.http.post("/v1/evaluate", json={"collection": medical, "cases": cases})
    assert scored.status_code == 200, scored.text
    assert scored.json()["retrieval"]["nDCG@10"] > 0


def test_negative_grades_count_as_not_relevant(query: QueryClient, medical: str) -> None:
    """A case judged only below -1 (TREC's -2 for junk), after any other evaluation, crashed
    the query service (SIGSEGV in trec_eval); a negative grade now counts as 0, as trec_eval
    counts it."""
    coffee = "Does coffee cause cancer?"
    results = []
    for relevant in ({"d4": 1}, {"d4": -2}, {"d4": -100}, {"d4": 0}, {"d4": 1, "d1": -2}):
        cases = [{"query": coffee, "relevant": relevant}]
        response = query.http.post("/v1/evaluate", json={"collection": medical, "cases": cases})
        assert response.status_code == 200, (relevant, response.text)
        results.append(response.json()["retrieval"])
    assert results[1] == results[2] == results[3]  # -2, -100 and 0: not relevant
    assert results[1]["nDCG@10"] == 0
    assert results[4] == results[0]
    beir = query.http.post(
        "/v1/evaluate/beir",
        files={
            "queries": ("q.jsonl", json.dumps({"_id": "q1", "text": coffee}).encode(), "x/y"),
            "qrels": ("t.tsv", b"q1\td4\t-2\n", "text/plain"),
        },
        data={"collection": medical},
    )
    assert beir.status_code == 200, beir.text
    assert beir.json()["retrieval"] == results[1]


def test_bad_beir_files_and_fields_are_refused_naming_them(
    query: QueryClient, medical: str
) -> None:
    """Each was a 500, or a 200 with every score 0: a top_k of "²" (str.isdigit), a query
    with a lone surrogate (json.loads lets "\\ud800" through to the embedder), a null text
    (searched as "None"), an _id twice (scored as one), a mode that does not exist."""
    good_queries = b'{"_id": "q1", "text": "coffee"}'
    qrels = b"q1\td4\t1\n"
    bad: list[tuple[bytes, dict[str, str], str]] = [
        (good_queries, {"top_k": "\u00b2"}, "top_k"),
        (good_queries, {"mode": "fuzzy"}, "mode"),
        (b'{"_id": "q1", "text": "coffee \\ud800"}', {}, "queries"),
        (b'{"_id": "q1", "text": null}', {}, "queries"),
        (b'{"_id": "q1", "text": {"a": 1}}', {}, "queries"),
        (good_queries + b'\n{"_id": "q1", "text": "tea"}', {}, "queries"),
    ]
    for queries, fields, field in bad:
        refused = query.http.post(
            "/v1/evaluate/beir",
            files={
                "queries": ("q.jsonl", queries, "application/jsonl"),
                "qrels": ("t.tsv", qrels, "text/plain"),
            },
            data={"collection": medical, **fields},
        )
        assert refused.status_code == 422, (queries, fields, refused.text)
        assert refused.json()["errors"][0]["field"] == field, refused.text
    numeric = query.http.post(  # a number as _id, as some files have
        "/v1/evaluate/beir",
        files={
            "queries": ("q.jsonl", b'{"_id": 1, "text": "coffee cancer"}', "application/jsonl"),
            "qrels": ("t.tsv", b"1\td4\t1\n", "text/plain"),
        },
        data={"collection": medical, "mode": "lexical", "top_k": "5"},
    )
    assert numeric.status_code == 200, numeric.text
    assert numeric.json()["retrieval"]["nDCG@10"] == 1.0


@pytest.fixture
def held_replica(query_stack: NativeStack, llm: Replay) -> Iterator[str]:
    """A second query replica whose LLM calls wait as long as the LLM holds them (the module's
    replica gives up after 2 s), renewing its evaluations' slots every third of 2 s."""
    port, health = free_port(), free_port()
    replica = query_stack.start_service(
        "query",
        {
            "PORT": str(port),
            "HEALTH_PORT": str(health),
            "LLM_TIMEOUT_SECONDS": "300",
            "EVALUATION_LEASE_SECONDS": "2",
        },
        name="query-held",
    )
    try:
        replica.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{health}/ready"), timeout=120, what="ready"
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        llm.gate.set()
        llm.script((500, "error_500.json"))
        replica.stop()


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _finished(http: httpx.Client, status_url: str, headers: dict[str, str]) -> dict:
    record: dict = {}

    def done() -> bool:
        nonlocal record
        record = http.get(status_url, headers=headers).json()
        return record["state"] != "running"

    _until(done, f"{status_url} still running")
    return record


def test_background_evaluations_are_capped_per_tenant_across_replicas(
    query_stack: NativeStack, query: QueryClient, medical: str, llm: Replay, held_replica: str
) -> None:
    held = httpx.Client(base_url=held_replica, timeout=30)
    body = {
        "collection": medical,
        "cases": [{"query": "Does aspirin prevent heart attacks?", "relevant": ["d1"]}],
        "answers": True,
        "generator": "openai",  # its call waits at the LLM while the gate is shut
        "background": True,
    }
    llm.script((500, "error_500.json"))  # then the extractive fallback answers
    llm.gate.clear()
    # Each case's LLM call gives up after LLM_TIMEOUT_SECONDS (2) while the gate is shut, and
    # the run goes on to the next: ten cases hold a run's slot for 20 s, not 2, so a busy
    # machine cannot see a slot come back before the refusals below are asked.
    slow = [
        {"query": f"Does aspirin prevent heart attacks? ({n})", "relevant": ["d1"]}
        for n in range(10)
    ]
    for _ in range(2):  # MAX_EVALUATIONS_PER_TENANT (2)
        assert held.post("/v1/evaluate", json={**body, "cases": slow}).status_code == 202
    _until(lambda: len(llm.requests) >= 2, "both evaluations are running")
    for replica in (held, query.http):  # counted in Redis: the same on every replica
        refused = replica.post("/v1/evaluate", json=body)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) > 0
        assert "MAX_EVALUATIONS_PER_TENANT" in refused.json()["detail"]
    assert query.http.post("/v1/evaluate", json={**body, "background": False}).status_code == 200
    # More cases than EVAL_SYNC_MAX_CASES (50) asked to run in the request take a slot too:
    # they ran outside the cap, as many at once as a tenant sent.
    many = [{"query": f"Does aspirin help? ({n})", "relevant": ["d1"]} for n in range(51)]
    held_up = query.http.post("/v1/evaluate", json={**body, "cases": many, "background": False})
    assert held_up.status_code == 429, held_up.text
    assert "MAX_EVALUATIONS_PER_TENANT" in held_up.json()["detail"]
    # Another tenant is not held up; its runs that fail give their slot back.
    other = {"X-RAG-Tenant": "other-tenant"}
    for _ in range(3):
        started = query.http.post("/v1/evaluate", json=body, headers=other)
        assert started.status_code == 202, started.text
        record = _finished(query.http, started.json()["status_url"], other)
        assert record["state"] == "failed"  # the collection is not that tenant's
    # The replica running both dies: their slots lapse without it.
    query_stack.processes["query-held"].signal(signal.SIGKILL)
    accepted: list[httpx.Response] = []

    def accepted_again() -> bool:
        response = query.http.post("/v1/evaluate", json=body)
        assert response.status_code in (202, 429), response.text
        accepted.extend([response] if response.status_code == 202 else [])
        return bool(accepted)

    _until(accepted_again, "the dead replica's slots were never freed")
    llm.gate.set()
    assert _finished(query.http, accepted[0].json()["status_url"], {})["state"] == "succeeded"
    # Its other slot lapses on its own clock, perhaps a moment later.
    accepted.clear()
    _until(accepted_again, "the dead replica's second slot was never freed")
    assert _finished(query.http, accepted[0].json()["status_url"], {})["state"] == "succeeded"
    # Runs that end give their slot back: two more, twice.
    # (A run's record says it ended a moment before its replica gives the slot back.)
    for _ in range(2):
        runs: list[httpx.Response] = []
        for _ in range(2):
            accepted.clear()
            _until(accepted_again, "a run that ended never gave its slot back")
            runs.append(accepted[0])
        for run in runs:
            assert _finished(query.http, run.json()["status_url"], {})["state"] == "succeeded"
