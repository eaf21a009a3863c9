"""Every error is RFC 9457 problem+json; bad input names the field; internals never leak."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient
from rag_core.errors import InvalidInput, NotFound, problem_details_plugin

from tests.support.logs import CapturedLogs


class NewCollection(msgspec.Struct):
    name: str
    dimension: int


@post("/collections", sync_to_thread=False)
def create_collection(data: JSONBody[NewCollection]) -> dict[str, str]:
    if data.name.startswith("_"):
        raise InvalidInput(
            "name must not start with '_'", extra={"errors": [{"field": "name", "message": "x"}]}
        )
    return {"name": data.name}


@get("/collections/missing", sync_to_thread=False)
def missing() -> None:
    raise NotFound("collection 'missing' does not exist")


@get("/crash", sync_to_thread=False)
def crash() -> None:
    raise RuntimeError("database password is hunter2")


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = Litestar(
        route_handlers=[create_collection, missing, crash],
        plugins=[problem_details_plugin()],
        logging_config=None,
    )
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_domain_error_is_problem_json(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/collections/missing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "status": 404,
        "type": "urn:rag-engine:problem:not-found",
        "title": "Not found",
        "detail": "collection 'missing' does not exist",
    }


async def test_invalid_body_names_the_field(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/collections", json={"name": "docs", "dimension": "big"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Bad Request"
    assert "dimension" in body["detail"]
    assert body["errors"][0]["field"] == "dimension"


async def test_domain_validation_keeps_its_extra_members(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/collections", json={"name": "_x", "dimension": 3})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "name", "message": "x"}]


async def test_unexpected_errors_are_logged_but_not_leaked(
    client: AsyncTestClient[Litestar],
) -> None:
    logs = CapturedLogs()
    response = await client.get("/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    logged = [line for line in logs.lines() if line["event"] == "unhandled_exception"]
    assert len(logged) == 1
    assert "RuntimeError" in str(logged[0]["exception"])


async def test_unknown_route_and_method_are_problem_json(
    client: AsyncTestClient[Litestar],
) -> None:
    not_found = await client.get("/nope")
    assert (not_found.status_code, not_found.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    wrong_method = await client.delete("/collections")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["title"] == "Method Not Allowed"


async def test_a_body_the_decoder_refuses_is_named_as_the_body(
    client: AsyncTestClient[Litestar],
) -> None:
    """Refused before any field was read, it had no `errors` entry; and msgspec says "Input
    data was truncated" of a lone surrogate escape too, which is not what happened."""
    for body, says in (
        (b'{"name": "a\\ud800", "dimension": 3}', "surrogate"),
        (b'{"name": "a", "dimension": 3', "ends too early"),
        (b'{"name": "a", "dimension": 1e400}', "Number out of range"),
        (b"\x1f\x8b\x08\x00", "JSON is malformed"),
    ):
        response = await client.post(
            "/collections", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, body
        problem = response.json()
        assert problem["errors"][0]["field"] == "body", problem
        assert says in problem["detail"], problem


async def test_a_client_gone_before_its_body_is_no_server_error() -> None:
    """A client that closed the connection while sending its body was logged and counted as
    a 500, which any client could add to at will: it is nginx's 499 now."""
    app = Litestar(
        route_handlers=[create_collection], plugins=[problem_details_plugin()], logging_config=None
    )
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/collections",
        "raw_path": b"/collections",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 499
