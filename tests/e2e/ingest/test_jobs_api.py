"""Following jobs: state and progress, SSE events, listing, metrics of the worker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rag_devstack import NativeStack, StackPorts
from rag_ingest.jobs.routes import HEARTBEAT_MS

from tests.support.ingest import IngestClient
from tests.support.metrics import value

pytestmark = pytest.mark.e2e


def test_sse_stream_follows_a_job_to_its_end(client: IngestClient) -> None:
    collection = client.create_collection()
    text = "\n\n".join(f"Paragraph {i} about proteins and their folding." * 8 for i in range(30))
    [job_id] = client.ingest_ok(collection, [{"text": text}])
    events = []
    with httpx.stream("GET", f"{client.base_url}/v1/jobs/{job_id}/events", timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in stream.iter_lines():
            if line.startswith("event:"):
                current["event"] = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                current["data"] = line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                current["id"] = line.split(":", 1)[1].strip()
            elif not line and current:
                events.append(current)
                current = {}
    names = [e["event"] for e in events]
    assert names[0] == "queued"
    assert "started" in names
    assert names[-1] == "succeeded"
    progress = [
        float(json.loads(e["data"])["progress"]) for e in events if e["event"] == "progress"
    ]
    assert progress == sorted(progress)
    assert {json.loads(e["data"])["stage"] for e in events} >= {"parsing", "embedding", "done"}
    # Resuming after the last event id gives nothing new and ends at once: the job is over,
    # so nothing waits for a heartbeat (15 s) that could bring more. The timeout is a hang
    # check well under that heartbeat, not a latency budget.
    resumed = httpx.get(
        f"{client.base_url}/v1/jobs/{job_id}/events",
        headers={"Last-Event-ID": events[-1]["id"]},
        timeout=HEARTBEAT_MS / 1000 - 5,
    )
    assert resumed.status_code == 200
    assert "event:" not in resumed.text
    # Without Last-Event-ID, a finished job's whole history is replayed, and the stream ends.
    replayed = httpx.get(f"{client.base_url}/v1/jobs/{job_id}/events", timeout=30)
    assert [
        line.split(":", 1)[1].strip()
        for line in replayed.text.splitlines()
        if line.startswith("event:")
    ] == names


def test_job_listing_filters_by_state_and_collection(client: IngestClient) -> None:
    collection = client.create_collection()
    ok = client.ingest_ok(collection, [{"text": "fine"}])
    bad = client.upload(collection, [("x.pdf", b"%PDF-1.4 broken", "application/pdf")])
    client.wait([*ok, bad.json()["jobs"][0]["job_id"]])
    listed = client.http.get("/v1/jobs", params={"collection": collection}).json()["jobs"]
    assert len(listed) == 2
    failed = client.http.get("/v1/jobs", params={"collection": collection, "state": "failed"})
    assert [j["filename"] for j in failed.json()["jobs"]] == ["x.pdf"]
    assert failed.json()["jobs"][0]["error_stage"] == "parsing"
    missing = client.http.get("/v1/jobs/does-not-exist")
    assert missing.status_code == 404
    assert client.http.get("/v1/jobs", params={"state": "exploded"}).status_code == 400


def test_retrying_a_failed_job_starts_a_new_run(client: IngestClient) -> None:
    collection = client.create_collection()
    bad = client.upload(collection, [("x.pdf", b"%PDF-1.4 broken", "application/pdf")])
    [job] = client.wait([bad.json()["jobs"][0]["job_id"]])
    retried = client.http.post(f"/v1/jobs/{job['id']}/retry")
    assert retried.status_code == 202
    assert retried.json()["run"] == 2
    [again] = client.wait([job["id"]])
    assert again["state"] == "failed"
    assert again["attempts"] == 1
    ok = client.ingest_ok(collection, [{"text": "fine"}])
    client.wait(ok)
    assert client.http.post(f"/v1/jobs/{ok[0]}/retry").status_code == 409


def test_worker_metrics_count_jobs_stages_and_chunks(
    ingest_stack: NativeStack, client: IngestClient
) -> None:
    metrics_url = f"http://127.0.0.1:{ingest_stack.ports.worker_health}/metrics"
    before = httpx.get(metrics_url).text
    collection = client.create_collection()
    client.wait(client.ingest_ok(collection, [{"text": f"Metric doc {i}."} for i in range(4)]))
    after = httpx.get(metrics_url).text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("rag_ingest_jobs_total", kind="ingest", outcome="succeeded") == 4
    assert delta("rag_ingest_chunks_embedded_total") == 4
    assert delta("rag_ingest_stage_duration_seconds_count", stage="embed") == 4
    assert delta("rag_ingest_job_duration_seconds_count", kind="ingest") == 4
    assert "rag_ingest_queue_depth" in after
    ready = httpx.get(f"http://127.0.0.1:{ingest_stack.ports.worker_health}/ready").json()
    assert set(ready["checks"]) == {"redis", "chroma"}


@pytest.fixture
def no_worker_stack(tmp_path: Path, model_cache: Path) -> Iterator[NativeStack]:
    native = NativeStack(
        tmp_path,
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "MAX_EVENT_STREAMS": "3",
            "MAX_EVENT_STREAMS_PER_TENANT": "2",
        },
    )
    with native:
        native.start(services=["ingest"], with_worker=False)
        yield native


def _queued_job_events(base_url: str, tenant: str) -> str:
    """The events URL of a job of ``tenant`` that stays queued (no worker runs)."""
    client = IngestClient(base_url)
    client.http.headers["X-RAG-Tenant"] = tenant
    collection = client.create_collection()
    [job_id] = client.ingest_ok(collection, [{"text": f"Waits: no worker runs ({tenant})."}])
    return f"{base_url}/v1/jobs/{job_id}/events"


def _refused(url: str, headers: dict[str, str]) -> httpx.Response:
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code != 200, "the stream was opened"
        response.read()
        return response


def test_event_streams_are_capped_per_tenant_and_per_process_and_never_starve_the_api(
    no_worker_stack: NativeStack,
) -> None:
    base_url = no_worker_stack.api_url("ingest")
    tenants = ("greedy", "modest", "late")
    urls = {tenant: _queued_job_events(base_url, tenant) for tenant in tenants}
    headers = {tenant: {"X-RAG-Tenant": tenant} for tenant in tenants}
    readers = []  # kept referenced: a dropped line iterator closes its stream

    def follow(open_streams: contextlib.ExitStack, tenant: str) -> None:
        stream = open_streams.enter_context(
            httpx.stream("GET", urls[tenant], headers=headers[tenant], timeout=30)
        )
        assert stream.status_code == 200
        readers.append(stream.iter_lines())
        assert next(readers[-1]).startswith("id:")  # streaming, and held open

    with contextlib.ExitStack() as open_streams:
        for _ in range(2):
            follow(open_streams, "greedy")
        greedy = _refused(urls["greedy"], headers["greedy"])
        assert greedy.status_code == 429
        assert greedy.headers["content-type"] == "application/problem+json"
        assert greedy.headers["retry-after"] == "5"
        assert "MAX_EVENT_STREAMS_PER_TENANT" in greedy.json()["detail"]
        follow(open_streams, "modest")  # one tenant's streams leave room for the others
        full = _refused(urls["late"], headers["late"])
        assert full.status_code == 503  # the process's own limit, over every tenant
        assert full.headers["content-type"] == "application/problem+json"
        assert full.headers["retry-after"] == "5"
        assert "MAX_EVENT_STREAMS)" in full.json()["detail"]
        job = httpx.get(urls["late"].removesuffix("/events"), headers=headers["late"])
        assert job.json()["state"] == "queued"  # the API still answers
    # The slots were given back.
    with httpx.stream("GET", urls["greedy"], headers=headers["greedy"], timeout=30) as again:
        assert again.status_code == 200


def test_the_workers_log_lines_of_a_job_carry_the_requests_trace_and_id(
    ingest_stack: NativeStack, client: IngestClient
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    collection = client.create_collection()
    response = client.ingest(
        collection,
        [{"text": "Traced from the request to the worker."}],
        headers={
            "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
            "X-Request-ID": "ingest-trace-check",
        },
    )
    assert response.status_code == 202
    job_id = response.json()["jobs"][0]["job_id"]
    client.wait([job_id])
    lines = [
        json.loads(line)
        for line in (ingest_stack.log_dir / "worker.log").read_text().splitlines()
        if job_id in line
    ]
    started = [line for line in lines if line["event"] in ("job_started", "job_succeeded")]
    assert len(started) == 2, lines
    assert {line["trace_id"] for line in started} == {trace_id}
    assert {line["request_id"] for line in started} == {"ingest-trace-check"}


def test_arq_check_is_the_workers_container_health_check(ingest_stack: NativeStack) -> None:
    arq = Path(sys.executable).parent / "arq"
    env = {**os.environ, "REDIS_URL": ingest_stack.redis_url}
    check = ["rag_ingest.worker.check.WorkerSettings"]
    healthy = subprocess.run([arq, "--check", *check], env=env, capture_output=True, check=False)
    assert healthy.returncode == 0, healthy.stderr
    # No worker has ever served this queue: the check fails.
    elsewhere = {**env, "REDIS_PREFIX": "noworker"}
    missing = subprocess.run(
        [arq, "--check", *check], env=elsewhere, capture_output=True, check=False
    )
    assert missing.returncode == 1


def test_jobs_show_callers_no_internals(client: IngestClient) -> None:
    """The stored record holds the worker's host and pid, the Chroma id, content hashes and
    the trace context: none of it is the caller's business."""
    collection = client.create_collection()
    [job_id] = client.ingest_ok(collection, [{"id": "d", "text": "Private details stay in."}])
    [finished] = client.wait([job_id])
    listed = client.http.get("/v1/jobs", params={"collection": collection}).json()["jobs"]
    internals = {"worker", "options", "traceparent", "request_id", "namespace", "sequence"}
    for shown in (finished, *listed):
        assert not internals & set(shown), sorted(internals & set(shown))
        assert shown["state"] == "succeeded"
        assert shown["document_id"] == "d"
        assert shown["collection"] == collection


def test_retrying_a_failed_job_never_brings_back_content_older_than_the_document(
    client: IngestClient,
) -> None:
    collection = client.create_collection()
    broken = client.http.post(
        f"/v1/collections/{collection}/documents/upload",
        files={"file": ("x.pdf", b"%PDF-1.4 broken", "application/pdf")},
        data={"id": "report"},
    )
    [failed] = client.wait([broken.json()["jobs"][0]["job_id"]])
    assert failed["state"] == "failed"
    client.wait(client.ingest_ok(collection, [{"id": "report", "text": "The newer report."}]))

    refused = client.http.post(f"/v1/jobs/{failed['id']}/retry")
    assert refused.status_code == 409, refused.text
    assert "changed since" in refused.json()["detail"]
    assert client.job(failed["id"])["run"] == 1, "the old job was not started again"
    assert client.document(collection, "report").json()["version"] == 1


@pytest.mark.parametrize(
    "last_event_id", ["abc", "-", "1-", "-1", "1-2-3", "1.5", "$", str(2**64), f"1-{2**64}"]
)
def test_a_last_event_id_that_is_no_event_id_is_refused_before_the_stream_starts(
    client: IngestClient, last_event_id: str
) -> None:
    """Not a 200 with an empty stream (Redis refusing the id once the response had started):
    a problem naming the header."""
    collection = client.create_collection()
    [job_id] = client.ingest_ok(collection, [{"text": "a short document"}])
    response = httpx.get(
        f"{client.base_url}/v1/jobs/{job_id}/events",
        headers={"Last-Event-ID": last_event_id},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "Last-Event-ID"


def test_every_event_id_the_stream_sends_resumes_it(client: IngestClient) -> None:
    collection = client.create_collection()
    [job_id] = client.ingest_ok(collection, [{"text": "a short document"}])
    client.wait([job_id])
    url = f"{client.base_url}/v1/jobs/{job_id}/events"

    def ids(headers: dict[str, str]) -> list[str]:
        response = httpx.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return [
            line.split(":", 1)[1].strip()
            for line in response.text.splitlines()
            if line.startswith("id:")
        ]

    sent = ids({})
    assert len(sent) >= 3
    for index, event_id in enumerate(sent):
        assert ids({"Last-Event-ID": event_id}) == sent[index + 1 :]
    # A stream id without its sequence number (Redis reads it as <ms>-0) resumes too.
    milliseconds = sent[1].split("-")[0]
    assert ids({"Last-Event-ID": milliseconds})[0] in sent[1:]
