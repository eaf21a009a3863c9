"""The SDK's transport rules: retries on 429/503 honouring Retry-After, problem details on
errors, connection failures named."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from rag_client import APIError, AsyncClient, Client, ConnectionFailed, Settings
from rag_client.client import MAX_BACKOFF_SECONDS, retry_delay


def scripted(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handle), seen


def settings(retries: int = 3) -> Settings:
    return Settings(url="http://127.0.0.1:9", api_key="k", retries=retries)


def test_retries_a_429_after_the_delay_it_asks_for() -> None:
    transport, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "1"}, json={"title": "Too Many Requests"}),
        httpx.Response(200, json={"id": "e1", "state": "succeeded"}),
    )
    started = time.monotonic()
    with Client(settings=settings(), transport=transport) as client:
        assert client.evaluation("e1")["state"] == "succeeded"
    assert time.monotonic() - started >= 0.9
    assert len(seen) == 2
    assert seen[0].headers["Authorization"] == "Bearer k"


def test_gives_up_after_its_retries_with_the_problem() -> None:
    busy = {"title": "Service Unavailable", "detail": "chroma is down", "status": 503}
    transport, seen = scripted(*(httpx.Response(503, headers={"Retry-After": "0"}, json=busy),) * 3)
    with (
        Client(settings=settings(retries=2), transport=transport) as client,
        pytest.raises(APIError) as caught,
    ):
        client.evaluation("e1")
    assert len(seen) == 3
    assert caught.value.status == 503
    assert caught.value.detail == "chroma is down"


def test_other_errors_are_not_retried_and_carry_their_fields() -> None:
    problem = {
        "title": "Unprocessable Entity",
        "detail": "top_k: must be between 1 and 100",
        "errors": [{"field": "top_k", "message": "must be between 1 and 100"}],
    }
    transport, seen = scripted(httpx.Response(422, json=problem))
    with (
        Client(settings=settings(), transport=transport) as client,
        pytest.raises(APIError) as caught,
    ):
        client.evaluate("c", [{"query": "q"}], top_k=0)
    assert len(seen) == 1
    assert caught.value.errors[0]["field"] == "top_k"
    assert "422" in str(caught.value)


def test_the_openai_error_shape_is_read_too() -> None:
    transport, _ = scripted(
        httpx.Response(401, json={"error": {"type": "invalid_api_key", "message": "bad key"}})
    )
    with (
        Client(settings=settings(), transport=transport) as client,
        pytest.raises(APIError) as caught,
    ):
        client.evaluation("e1")
    assert (caught.value.title, caught.value.detail) == ("invalid_api_key", "bad key")


def test_an_unreachable_server_is_named() -> None:
    with (
        Client(settings=Settings(url="http://127.0.0.1:9", retries=0)) as client,
        pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1:9"),
    ):
        client.evaluation("e1")


def test_retry_after_as_a_date_and_the_backoff_cap() -> None:
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    response = httpx.Response(429, headers={"Retry-After": later})
    assert 3.5 <= retry_delay(response, 0) <= 5.0
    assert retry_delay(httpx.Response(429, headers={"Retry-After": "9999"}), 0) == (
        MAX_BACKOFF_SECONDS
    )
    assert retry_delay(httpx.Response(503), 0) == 0.5
    assert retry_delay(httpx.Response(503), 3) == 4.0


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("RAG_API_KEY", "from-env")
    read = Settings.from_env()
    assert (read.url, read.api_key) == ("http://127.0.0.1:8081", "from-env")
    assert Settings.from_env(api_key="explicit").api_key == "explicit"


async def test_the_async_client_follows_the_same_rules() -> None:
    transport = httpx.MockTransport(
        lambda request: (
            httpx.Response(200, json={"id": "e1", "state": "running", "progress": 0.5})
            if request.url.path.endswith("/e1")
            else httpx.Response(404, json={"title": "Not Found"})
        )
    )
    async with AsyncClient(settings=settings(), transport=transport) as client:
        assert (await client.evaluation("e1"))["progress"] == 0.5
        with pytest.raises(APIError):
            await client.evaluation("nope")


def test_waiting_for_many_jobs_polls_each_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs end roughly in the order sent: a round stops after a few still running, so 200
    jobs cost about a request each plus a few per round (it used to be one request per pending
    job per round: 200 per half second against the server the jobs run on)."""
    ids = [f"j{n:03d}" for n in range(200)]
    polls: list[str] = []
    rounds = [0]
    monkeypatch.setattr("rag_client.client.time.sleep", lambda _: rounds.append(0))

    def handle(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[1]
        polls.append(job_id)
        done = 20 * len(rounds)  # the server ends 20 jobs between two rounds
        state = "succeeded" if ids.index(job_id) < done else "running"
        return httpx.Response(200, json={"id": job_id, "state": state})

    seen: list[str] = []
    with Client(settings=settings(), transport=httpx.MockTransport(handle)) as client:
        jobs = client.wait_jobs(ids, on_progress=lambda job: seen.append(job.id))
    assert [job.id for job in jobs] == ids
    assert {job.state for job in jobs} == {"succeeded"}
    assert len(polls) <= len(ids) + 8 * len(rounds), (len(polls), len(rounds))
    assert set(seen) == set(ids)
