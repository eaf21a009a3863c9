"""The evaluation API on a small BEIR-format set: retrieval metrics, answer metrics, BEIR file
upload, background runs with progress, and the LLM judge on a recorded response."""

from __future__ import annotations

import json
import time

import pytest

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
    assert answers["faithfulness"] is None  # not asked for
    assert result["per_case"][0]["retrieved"][0] == "d1"


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
        ({"cases": [{"query": "x"}], "collection": "missing-one"}, 404, None),
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
