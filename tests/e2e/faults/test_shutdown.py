"""SIGTERM to each HTTP service while requests are in flight: the requests finish (streamed
answers end with `done`, an upload still being sent is accepted), the process exits 0, and
through nginx a query replica going away fails no request. (A busy worker stopped with SIGTERM
is in test_dependencies.py.)"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from rag_devstack import ManagedProcess, NativeStack, StackPorts

from tests.e2e.gateway.conftest import ADMIN_KEY, Edge
from tests.support.replay import Replay, replay_server

pytestmark = pytest.mark.e2e
LLM_SECONDS = 3.0  # how long the stand-in LLM takes: the answers are in flight that long
GRACE_SECONDS = 15


@pytest.fixture(scope="module")
def llm() -> Iterator[Replay]:
    with replay_server((200, "openai_chat_answer.sse")) as replay:
        yield replay


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, llm: Replay
) -> Iterator[NativeStack]:
    native = NativeStack(
        tmp_path_factory.mktemp("shutdown"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "ADMIN_API_KEY": ADMIN_KEY,
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": f"{llm.url}/v1",
            "LLM_MAX_RETRIES": "0",
            "LLM_TIMEOUT_SECONDS": "20",
            "GRACEFUL_SHUTDOWN_SECONDS": str(GRACE_SECONDS),
            "VERSION_GRACE_SECONDS": "2",
        },
    )
    with native:
        native.start(with_nginx=True, query_replicas=2)
        yield native


@pytest.fixture(scope="module")
def auth(stack: NativeStack) -> dict[str, str]:
    edge = Edge(stack.edge_url)
    headers = edge.bearer(edge.new_key("shutdown", ["ingest:write", "query:read"]))
    assert edge.http.post("/v1/collections", json={"name": "capitals"}, headers=headers).is_success
    posted = edge.http.post(
        "/v1/collections/capitals/documents",
        json={"documents": [{"id": "paris", "text": "Paris is the capital of France."}]},
        headers=headers,
    )
    assert edge.wait_job(posted.json()["jobs"][0]["job_id"], headers)["state"] == "succeeded"
    edge.wait_searchable("capitals", "capital of France", headers, "paris")
    return headers


def exit_code(process: ManagedProcess, timeout: float = GRACE_SECONDS + 10) -> int:
    """Wait for a process told to stop to exit by itself: a second SIGTERM (what ``stop``
    sends) would mean "stop now"."""
    deadline = time.monotonic() + timeout
    while (code := process.poll()) is None:
        assert time.monotonic() < deadline, f"still running {timeout} s after SIGTERM"
        time.sleep(0.1)
    return code


def streamed_answer(url: str, headers: dict[str, str]) -> str:
    """A streamed answer from the (slow) openai generator: its whole event stream."""
    with httpx.Client(timeout=60) as http:
        response = http.post(
            f"{url}/v1/collections/capitals/query",
            json={
                "query": "What is the capital of France?",
                "stream": True,
                "generator": "openai",
                "cache": False,
            },
            headers=headers,
        )
    assert response.status_code == 200, response.text
    return response.text


def answers_in_flight(
    url: str, headers: dict[str, str], count: int
) -> tuple[ThreadPoolExecutor, list]:
    pool = ThreadPoolExecutor(count)
    futures = [pool.submit(streamed_answer, url, headers) for _ in range(count)]
    return pool, futures


def test_a_query_replica_stopped_mid_answer_finishes_them_and_fails_nothing(
    stack: NativeStack, auth: dict[str, str], llm: Replay
) -> None:
    llm.script((200, "openai_chat_answer.sse"), hang_seconds=LLM_SECONDS)
    pool, answers = answers_in_flight(stack.edge_url, auth, 4)  # two on each replica
    llm.wait_requests(4)  # each is mid-answer: its replica waits for the model
    query = stack.processes["query"]
    query.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    try:
        # Searches meanwhile, through nginx: the draining replica refuses new connections and
        # nginx sends them to the other one.
        statuses = []
        with httpx.Client(base_url=stack.edge_url, timeout=30) as http:
            while time.monotonic() - stopped_at < LLM_SECONDS:
                found = http.post(
                    "/v1/collections/capitals/search", json={"query": "France"}, headers=auth
                )
                statuses.append(found.status_code)
                time.sleep(0.05)
        code = exit_code(query)
        streams = [future.result(timeout=60) for future in answers]
        pool.shutdown()
        assert code == 0, query.log_tail()
        assert len(llm.requests) == 4  # every answer reached the LLM (none was lost)
        for text in streams:
            assert "event: done" in text, text[-500:]
            assert "event: error" not in text
        assert statuses, "no search ran while the replica drained"
        assert set(statuses) == {200}, statuses
    finally:  # the next test needs it, whatever this one found
        if query.poll() is None:
            query.stop()
        stack.start_service("query")
        stack.wait_ready("query")


def test_the_gateway_stopped_mid_answer_finishes_them(
    stack: NativeStack, auth: dict[str, str], llm: Replay
) -> None:
    llm.script((200, "openai_chat_answer.sse"), hang_seconds=LLM_SECONDS)
    pool, answers = answers_in_flight(stack.edge_url, auth, 3)
    llm.wait_requests(3)  # each is mid-answer
    gateway = stack.processes["gateway"]
    gateway.signal(signal.SIGTERM)
    try:
        # Draining: soon no new connection is served (behind nginx a second gateway would take
        # it): refused, or (one that reached the listen queue as it closed) closed unanswered.
        deadline = time.monotonic() + 5
        while True:
            try:
                httpx.get(f"{stack.api_url('gateway')}/health", timeout=5)
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                break
            assert time.monotonic() < deadline, "the draining gateway still takes connections"
            time.sleep(0.1)
        code = exit_code(gateway)
        pool.shutdown()
        failures = [future.exception() for future in answers if future.exception() is not None]
        assert failures == [], gateway.log_tail()
        streams = [future.result() for future in answers]
        assert code == 0, gateway.log_tail()
        for text in streams:
            assert "event: done" in text, text[-500:]
    finally:  # the next test needs it, whatever this one found
        if gateway.poll() is None:
            gateway.stop()
        stack.start_service("gateway")
        stack.wait_ready("gateway")


def test_the_ingest_api_stopped_mid_upload_accepts_it(
    stack: NativeStack, auth: dict[str, str]
) -> None:
    """An upload whose body is still arriving when SIGTERM comes is read to the end and
    queued: the client gets its 202 and the job runs."""
    boundary = "shutdowntest"
    text = "Lyon is a city in France known for its food. " * 200
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="lyon.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n".encode(),
        *[text[i : i + 1000].encode() for i in range(0, len(text), 1000)],
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    size = sum(len(p) for p in parts)
    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        for index, part in enumerate(parts):
            if index == 2:
                sent.set()  # the request has started: its headers and first bytes are in
            time.sleep(0.1)
            yield part

    result: dict[str, httpx.Response] = {}

    def upload() -> None:
        result["response"] = httpx.post(
            f"{stack.api_url('ingest')}/v1/collections/capitals/documents/upload",
            content=slow_body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(size),
                "X-Rag-Tenant": "shutdown",
            },
            timeout=60,
        )

    client = threading.Thread(target=upload)
    client.start()
    assert sent.wait(10)
    ingest = stack.processes["ingest"]
    ingest.signal(signal.SIGTERM)
    client.join(timeout=60)
    code = exit_code(ingest)
    assert code == 0, ingest.log_tail()
    response = result["response"]
    assert response.status_code == 202, response.text
    stack.start_service("ingest")
    stack.wait_ready("ingest")
    edge = Edge(stack.edge_url)
    job = edge.wait_job(response.json()["jobs"][0]["job_id"], auth)
    assert job["state"] == "succeeded", job
