"""The worker dies, Chroma goes away: no job is lost, duplicated or silently stuck."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rag_devstack import NativeStack, free_port

from tests.support.chroma import chunks_in_chroma
from tests.support.ingest import IngestClient
from tests.support.shared_stack import QUICK_RECOVERY, SharedStack

pytestmark = pytest.mark.e2e


# Settings of the ingest API and workers (the API gives each job JOB_MAX_TRIES attempts).
# Redis and Chroma are the module's; a test whose settings differ from the last one's gets the
# API and worker restarted with its own.
# (Re-embeddings copy 10 documents a step here, so one is killed surely between two steps.)
DEFAULT = {"JOB_MAX_TRIES": "3", "WORKER_CONCURRENCY": "4", "REEMBED_BATCH_DOCUMENTS": "10"}
PATIENT = {"JOB_MAX_TRIES": "10"}
IMPATIENT = {"JOB_MAX_TRIES": "2", "JOB_TIMEOUT_SECONDS": "3", "PARSE_TIMEOUT_SECONDS": "600"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[SharedStack]:
    env = {"DATA_DIR": str(model_cache), **QUICK_RECOVERY}
    with SharedStack(tmp_path_factory, "worker-faults", env, ["ingest"]) as shared:
        yield shared


@pytest.fixture
def stack(shared: SharedStack, request: pytest.FixtureRequest) -> Iterator[NativeStack]:
    """The module's stack: what a test stops is started again after it (a failed test's
    stack is replaced), so each test starts from a whole stack."""
    yield from shared.serve(request, DEFAULT)


@pytest.fixture
def patient_stack(shared: SharedStack, request: pytest.FixtureRequest) -> Iterator[NativeStack]:
    yield from shared.serve(request, PATIENT)


@pytest.fixture
def impatient_stack(shared: SharedStack, request: pytest.FixtureRequest) -> Iterator[NativeStack]:
    yield from shared.serve(request, IMPATIENT)


def _docs(count: int) -> list[dict]:
    return [
        {
            "id": f"doc-{i:03d}",
            "text": "\n\n".join(
                f"Document {i} part {p}: cells {i} and genes {p} interact in pathway {i * p}."
                for p in range(6)
            ),
        }
        for i in range(count)
    ]


def _kill_while_running(
    client: IngestClient, stack: NativeStack, collection: str, worker: str
) -> None:
    """SIGKILL ``worker`` while it runs jobs, once part of the batch is done."""
    deadline = time.monotonic() + 120
    while True:
        listing = client.http.get("/v1/jobs", params={"collection": collection, "limit": 500})
        jobs_now = listing.json()["jobs"]
        succeeded = sum(j["state"] == "succeeded" for j in jobs_now)
        if succeeded >= 20 and any(j["state"] == "running" for j in jobs_now):
            stack.processes[worker].signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline
        time.sleep(0.25)  # a listing of every job: not so often that it slows the worker
    stack.processes[worker].stop()


# Its own waits (the kill, then every job) catch hangs; pytest's default timeout is shorter
# than them, and once cut it on a busy CI machine that was still making progress.
@pytest.mark.timeout(480)
def test_sigkill_mid_batch_then_restart_ingests_everything_exactly_once(
    stack: NativeStack,
) -> None:
    client = IngestClient(stack.api_url("ingest"))
    killed = client.create_collection()
    job_ids = client.ingest_ok(killed, _docs(60)) + client.ingest_ok(killed, _docs(120)[60:])
    worker = "worker"
    for round_ in range(5):
        _kill_while_running(client, stack, killed, worker)
        states = [client.job(j) for j in job_ids]
        running = [job for job in states if job["state"] == "running"]
        if running:
            break
        # The kill fell between two jobs: start another worker and try again.
        worker = f"worker-retry-{round_}"
        port = free_port()
        stack.start_worker(name=worker, health_port=port)
        stack.wait_worker(name=worker, health_port=port)
    assert any(job["state"] == "queued" for job in states), "killed mid-batch"
    stack.start_worker()  # the killed one restarted, on its own port
    stack.wait_worker()
    # The same documents ingested by a worker nobody kills, for the chunk count to expect:
    # queued now, they run while the killed worker's jobs wait for the reconciler (their
    # worker's heartbeat must expire first).
    clean = client.create_collection()
    clean_ids = client.ingest_ok(clean, _docs(60)) + client.ingest_ok(clean, _docs(120)[60:])
    jobs = client.wait(job_ids, timeout=240)
    assert {job["state"] for job in jobs} == {"succeeded"}
    assert running, "a kill should have interrupted running jobs"
    interrupted = {job["id"] for job in running}
    assert all(job["attempts"] >= 2 for job in jobs if job["id"] in interrupted)

    assert {job["state"] for job in client.wait(clean_ids)} == {"succeeded"}
    assert client.collection(killed)["document_count"] == 120
    assert client.collection(killed)["chunk_count"] == client.collection(clean)["chunk_count"]
    count = chunks_in_chroma(stack, killed)
    assert count == client.collection(killed)["chunk_count"], "no duplicate chunks in Chroma"


@pytest.mark.timeout(360)
def test_a_worker_killed_mid_reembedding_resumes_where_it_stopped(stack: NativeStack) -> None:
    """SIGKILL while a re-embedding copies: the next worker goes on from the versions the shadow
    holds whole, the switch happens once, and the new Chroma collection has each chunk once."""
    client = IngestClient(stack.api_url("ingest"))
    name = client.create_collection(embedding_model="all-MiniLM-L6-v2-int8")
    jobs = client.wait(client.ingest_ok(name, _docs(200)), timeout=240)
    assert {job["state"] for job in jobs} == {"succeeded"}
    before = client.collection(name)
    started = client.http.post(
        f"/v1/collections/{name}/reembed", json={"embedding_model": "all-MiniLM-L6-v2"}
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        job = client.job(job_id)
        assert job["state"] in ("queued", "running"), job
        if job["stage"] == "copying" and job["progress"] >= 0.2:
            stack.processes["worker"].signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    stack.processes["worker"].stop()
    assert client.job(job_id)["state"] == "running", "killed mid-copy"
    assert client.collection(name)["embedding_model"] == "all-MiniLM-L6-v2-int8"
    stack.start_worker()
    stack.wait_worker()
    [final] = client.wait([job_id], timeout=240)
    assert final["state"] == "succeeded", final
    assert final["attempts"] >= 2
    result = final["result"]
    assert result["chunks_already_copied"] >= 40, result  # what the killed run copied
    assert result["chunks_embedded"] + result["chunks_already_copied"] == before["chunk_count"]
    after = client.collection(name)
    assert after["embedding_model"] == "all-MiniLM-L6-v2"
    assert after["chunk_count"] == before["chunk_count"]
    assert after["reembedding"] is None
    assert chunks_in_chroma(stack, name) == after["chunk_count"], "each chunk once"


def test_exhausted_retries_dead_letter_the_job_and_retry_revives_it(stack: NativeStack) -> None:
    client = IngestClient(stack.api_url("ingest"))
    collection = client.create_collection()
    stack.processes["chroma"].stop()
    [job_id] = client.ingest_ok(collection, [{"id": "unlucky", "text": "Never reaches Chroma."}])
    [job] = client.wait([job_id], timeout=90)  # JOB_MAX_TRIES=3: 1 s + 2 s of backoff
    assert job["state"] == "dead"
    assert job["attempts"] == 3
    assert "Chroma" in job["error"]
    dead = client.http.get("/v1/jobs", params={"state": "dead"}).json()["jobs"]
    assert job_id in [j["id"] for j in dead]
    stack.start_chroma()
    stack.wait_chroma()
    assert client.http.post(f"/v1/jobs/{job_id}/retry").status_code == 202
    [revived] = client.wait([job_id], timeout=60)
    assert revived["state"] == "succeeded"
    assert revived["run"] == 2


def test_chroma_outage_is_retried_with_backoff_then_succeeds(patient_stack: NativeStack) -> None:
    stack = patient_stack
    client = IngestClient(stack.api_url("ingest"))
    collection = client.create_collection()
    stack.processes["chroma"].stop()
    [job_id] = client.ingest_ok(collection, [{"id": "patient", "text": "Waits for Chroma."}])
    deadline = time.monotonic() + 30
    while (record := client.job(job_id))["attempts"] < 2:
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
    assert record["state"] in ("queued", "running")
    assert "Chroma" in (record["error"] or "")
    stack.start_chroma()
    stack.wait_chroma()
    [job] = client.wait([job_id], timeout=90)
    assert job["state"] == "succeeded"
    assert job["error"] is None
    assert client.document(collection, "patient").status_code == 200


def test_an_attempt_over_the_job_timeout_is_retried_then_dead_lettered(
    impatient_stack: NativeStack,
) -> None:
    client = IngestClient(impatient_stack.api_url("ingest"))
    collection = client.create_collection()
    depth = 50_000  # parsing takes minutes: every attempt runs into JOB_TIMEOUT_SECONDS
    nested = b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"
    response = client.upload(collection, [("slow.html", nested, "text/html")])
    assert response.status_code == 202, response.text
    [job] = client.wait([response.json()["jobs"][0]["job_id"]], timeout=90)
    assert job["state"] == "dead"
    assert job["attempts"] == 2
    assert "JOB_TIMEOUT_SECONDS" in job["error"]
    assert job["error_stage"] == "parsing"
    later = client.ingest_ok(collection, [{"id": "next", "text": "The worker carries on."}])
    assert client.wait(later)[0]["state"] == "succeeded"
