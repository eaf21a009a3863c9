"""Dependencies and processes die under work: Redis killed with jobs queued, Chroma gone
while queries keep coming, a busy worker stopped with SIGTERM. Nothing is lost, nothing
hangs, every error is a clear problem+json, and everything recovers without restarting
anything else."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rag_devstack import NativeStack

from tests.support.chroma import chunks_in_chroma
from tests.support.ingest import IngestClient
from tests.support.query import QueryClient
from tests.support.shared_stack import QUICK_RECOVERY, SharedStack

pytestmark = pytest.mark.e2e


def docs(count: int, prefix: str = "doc") -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i:03d}",
            "text": "\n\n".join(
                f"Record {i} section {p}: enzyme {i} binds receptor {p} in tissue {i + p}."
                for p in range(4)
            ),
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[SharedStack]:
    env = {
        "DATA_DIR": str(model_cache),
        "WORKER_CONCURRENCY": "8",
        "JOB_MAX_TRIES": "5",
        **QUICK_RECOVERY,
    }
    with SharedStack(tmp_path_factory, "dependencies", env, ["ingest", "query"]) as shared:
        yield shared


@pytest.fixture
def stack(shared: SharedStack, request: pytest.FixtureRequest) -> Iterator[NativeStack]:
    """The module's stack: what a test stops is started again after it (a failed test's
    stack is replaced), so each test starts from a whole stack."""
    yield from shared.serve(request)


def assert_exactly_once(stack: NativeStack, client: IngestClient, collection: str, n: int) -> None:
    stats = client.collection(collection)
    assert stats["document_count"] == n
    # No duplicate or orphan chunks: what Chroma holds is what the documents say they have.
    assert chunks_in_chroma(stack, collection) == stats["chunk_count"]


def test_queued_jobs_survive_redis_being_killed_and_restarted(stack: NativeStack) -> None:
    client = IngestClient(stack.api_url("ingest"))
    collection = client.create_collection()
    stack.processes["worker"].stop()  # nothing runs: every job stays queued
    job_ids = client.ingest_ok(collection, docs(50))
    assert {client.job(j)["state"] for j in job_ids} == {"queued"}
    # SIGKILL, not a clean shutdown: Redis writes each command to its AOF before it replies,
    # so what the API acknowledged survives the process dying (fsync every second covers
    # the machine dying, which no test here can do).
    stack.processes["redis"].signal(signal.SIGKILL)
    stack.processes["redis"].stop()
    unavailable = client.http.get(f"/v1/collections/{collection}")
    assert unavailable.status_code == 503
    assert unavailable.headers["content-type"].startswith("application/problem+json")
    stack.start_redis()
    stack.wait_redis()
    stack.start_worker()  # the API was not restarted: its connection pool reconnects
    finished = client.wait(job_ids, timeout=180)
    assert Counter(job["state"] for job in finished) == {"succeeded": 50}
    assert_exactly_once(stack, client, collection, 50)


def test_queries_get_503_while_chroma_is_down_then_recover(stack: NativeStack) -> None:
    ingest = IngestClient(stack.api_url("ingest"))
    query = QueryClient(stack.api_url("query"))
    collection = ingest.create_collection()
    ingest.wait(ingest.ingest_ok(collection, docs(5)))
    query.wait_for(collection, "enzyme receptor tissue", "doc-004")
    assert query.search(collection, "enzyme 3 receptor").status_code == 200

    stack.processes["chroma"].stop()
    statuses: Counter[int] = Counter()
    slowest = 0.0
    deadline = time.monotonic() + 90
    rounds = 0
    while rounds < 6 or statuses[503] < 6:  # a few rounds of each kind after it is noticed
        assert time.monotonic() < deadline, f"Chroma's outage never showed: {statuses}"
        rounds += 1
        for mode in ("dense", "hybrid"):
            started = time.monotonic()
            response = query.search(collection, "enzyme receptor", mode=mode)
            slowest = max(slowest, time.monotonic() - started)
            statuses[response.status_code] += 1
            if response.status_code != 200:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert "Chroma" in response.json()["detail"]
                assert "127.0.0.1" not in response.text  # no internal addresses
        answer = query.ask(collection, "Which receptor does enzyme 2 bind?")
        statuses[answer.status_code] += 1
        assert answer.status_code in (200, 503), answer.text
        time.sleep(0.2)
    assert statuses[503] > 0, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert slowest < 15, f"a request took {slowest:.1f} s while Chroma was down"
    ready = httpx.get(f"{stack.health_url('query')}/ready", timeout=10)
    assert ready.status_code == 503

    stack.start_chroma()
    stack.wait_chroma()
    deadline = time.monotonic() + 30
    while query.search(collection, "enzyme 3 receptor", mode="dense").status_code != 200:
        assert time.monotonic() < deadline, "search did not recover after Chroma came back"
        time.sleep(0.5)
    hits = query.hits(collection, "enzyme 3 binds receptor", mode="hybrid")
    assert hits
    assert hits[0]["document_id"].startswith("doc-")
    assert httpx.get(f"{stack.health_url('query')}/ready", timeout=10).status_code == 200


def test_a_worker_killed_three_times_during_200_documents_repeats_and_loses_nothing(
    stack: NativeStack,
) -> None:
    client = IngestClient(stack.api_url("ingest"))
    collection = client.create_collection()
    job_ids = client.ingest_ok(collection, docs(200))
    for kill in range(3):
        deadline = time.monotonic() + 120
        while True:  # SIGKILL only while the worker is in the middle of jobs
            listing = client.http.get("/v1/jobs", params={"collection": collection, "limit": 200})
            states = Counter(job["state"] for job in listing.json()["jobs"])
            if states["running"] and states["succeeded"] >= 25 * (kill + 1):
                break
            assert time.monotonic() < deadline, f"kill {kill + 1}: {states}"
            time.sleep(0.25)
        stack.processes["worker"].signal(signal.SIGKILL)
        stack.processes["worker"].stop()
        stack.start_worker()
        stack.wait_worker()
    finished = client.wait(job_ids, timeout=400)
    outcome = Counter(job["state"] for job in finished)
    assert outcome == {"succeeded": 200}, [j["error"] for j in finished if j["error"]][:5]
    assert_exactly_once(stack, client, collection, 200)


def test_sigterm_to_a_busy_worker_loses_no_job(stack: NativeStack) -> None:
    client = IngestClient(stack.api_url("ingest"))
    collection = client.create_collection()
    job_ids = client.ingest_ok(collection, docs(120))
    deadline = time.monotonic() + 120
    while not any(client.job(j)["state"] == "running" for j in job_ids[:40]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker = stack.processes["worker"]
    worker.signal(signal.SIGTERM)  # once: a second signal means "stop now"
    deadline = time.monotonic() + 60
    while (exit_code := worker.poll()) is None:  # running jobs finish or are handed back
        assert time.monotonic() < deadline, "the worker did not stop within 60 s"
        time.sleep(0.1)
    assert exit_code == 0
    states = Counter(client.job(j)["state"] for j in job_ids)
    assert states["failed"] == states["dead"] == 0, states
    assert states["running"] == 0, f"jobs left running by a stopped worker: {states}"
    assert states["queued"] > 0, "the worker should have stopped before finishing everything"
    stack.start_worker()
    finished = client.wait(job_ids, timeout=240)
    assert Counter(job["state"] for job in finished) == {"succeeded": 120}
    assert_exactly_once(stack, client, collection, 120)


def test_searches_keep_answering_while_documents_are_ingested(stack: NativeStack) -> None:
    """Reads never wait for writes: a bounded search load during a 60-document ingest."""
    ingest = IngestClient(stack.api_url("ingest"))
    query = QueryClient(stack.api_url("query"))
    collection = ingest.create_collection()
    ingest.wait(ingest.ingest_ok(collection, docs(3, "seed")))
    query.wait_for(collection, "enzyme receptor", "seed-002")
    job_ids = ingest.ingest_ok(collection, docs(60))
    failures: list[str] = []
    done = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=stack.api_url("query"), timeout=30) as http:
            while not done.is_set():
                response = http.post(
                    f"/v1/collections/{collection}/search", json={"query": "enzyme receptor"}
                )
                if response.status_code != 200:
                    failures.append(response.text)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        ingest.wait(job_ids, timeout=180)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert failures == []
