"""`rag eval` through its real entry point, against the stack behind nginx: a BEIR-format set,
JSON cases in the background with progress (plain lines without a terminal, a bar on one),
and the exit codes of every way it can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rag_devstack import free_port

from tests.e2e.gateway.conftest import Edge
from tests.support.cli import rag, rag_on_terminal
from tests.support.eval import MEDICAL_CORPUS, MEDICAL_QRELS, MEDICAL_QUERIES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def evaluated(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tenant's key, a collection holding MEDICAL_CORPUS (searchable on every replica), and the
    BEIR files."""
    key = edge.new_key("evalcli", ["ingest:write", "query:read"], name="cli eval")
    auth = edge.bearer(key)
    assert edge.http.post("/v1/collections", json={"name": "med"}, headers=auth).status_code == 201
    posted = edge.http.post(
        "/v1/collections/med/documents",
        json={"documents": [{"id": k, "text": v} for k, v in MEDICAL_CORPUS.items()]},
        headers=auth,
    )
    assert posted.status_code == 202, posted.text
    for job in posted.json()["jobs"]:
        assert edge.wait_job(job["job_id"], auth)["state"] == "succeeded"
    edge.wait_searchable("med", "memory consolidation", auth, "d5")
    folder = tmp_path_factory.mktemp("beir")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in MEDICAL_QUERIES) + "\n")
    (folder / "qrels.tsv").write_text(MEDICAL_QRELS)
    cases = [
        {"query": q["text"], "relevant": [d]}
        for q, d in zip(MEDICAL_QUERIES[:3], ["d1", "d2", "d5"], strict=True)
    ]
    # Several right answers: the answer scores its best against them.
    cases[0]["expected_answer"] = ["Bananas grow in warm places.", MEDICAL_CORPUS["d1"]]
    (folder / "cases.json").write_text(json.dumps({"cases": cases}))
    return {"key": key, "dir": str(folder), "url": edge.url}


def test_beir_files_through_the_gateway(evaluated: dict[str, str]) -> None:
    folder = Path(evaluated["dir"])
    done = rag(
        "--json",
        "eval",
        str(folder / "queries.jsonl"),
        "--qrels",
        str(folder / "qrels.tsv"),
        "--collection",
        "med",
        env={"RAG_URL": evaluated["url"], "RAG_API_KEY": evaluated["key"]},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["cases"] == result["judged_cases"] == 3  # q9 has no judgements
    assert result["retrieval"]["RR@10"] == 1.0
    assert result["retrieval"]["nDCG@10"] == 1.0


def test_cases_in_the_background_with_plain_progress(evaluated: dict[str, str]) -> None:
    done = rag(
        "--url",
        evaluated["url"],
        "--api-key",
        evaluated["key"],
        "eval",
        str(Path(evaluated["dir"]) / "cases.json"),
        "-c",
        "med",
        "--background",
        "--answers",
    )
    assert done.returncode == 0, done.stderr
    # Not a terminal: progress as plain lines on stderr, ending at 100%; the table on stdout.
    assert "succeeded 100%" in done.stderr
    assert "\x1b[" not in done.stderr
    assert "nDCG@10" in done.stdout
    assert "citation_precision" in done.stdout
    assert "1.0000" in done.stdout
    [recall] = [line for line in done.stdout.splitlines() if "answer_recall" in line]
    assert "1.0000" in recall, done.stdout


def test_a_progress_bar_on_a_terminal(evaluated: dict[str, str]) -> None:
    code, text = rag_on_terminal(
        "--url",
        evaluated["url"],
        "--api-key",
        evaluated["key"],
        "eval",
        str(Path(evaluated["dir"]) / "cases.json"),
        "-c",
        "med",
        "--background",
    )
    assert code == 0
    assert "evaluating" in text  # the bar
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "nDCG@10" in text


def test_exit_codes(evaluated: dict[str, str], tmp_path: Path) -> None:
    cases = str(Path(evaluated["dir"]) / "cases.json")
    with_key = ["--url", evaluated["url"], "--api-key", evaluated["key"]]

    missing = rag(*with_key, "eval", cases, "-c", "no-such-collection")
    assert missing.returncode == 1
    assert "404" in missing.stderr

    wrong_key = rag("--url", evaluated["url"], "--api-key", "not-a-key", "eval", cases, "-c", "med")
    assert wrong_key.returncode == 1
    assert "401" in wrong_key.stderr

    bad_field = rag(*with_key, "eval", cases, "-c", "med", "--top-k", "0")
    assert bad_field.returncode == 1
    assert "top_k" in bad_field.stderr

    unreachable = rag(
        "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "x", "eval", cases, "-c", "med"
    )
    assert unreachable.returncode == 3
    assert "cannot reach" in unreachable.stderr

    assert rag(*with_key, "eval", str(tmp_path / "absent.json"), "-c", "med").returncode == 2
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    not_json = rag(*with_key, "eval", str(broken), "-c", "med")
    assert not_json.returncode == 2
    assert "not JSON" in not_json.stderr
    assert rag(*with_key, "eval", cases).returncode == 2  # --collection is required
