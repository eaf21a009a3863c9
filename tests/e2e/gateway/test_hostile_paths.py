"""Hostile input at the front door (issue 22): paths built to reach something other than what
the gateway authorised, an empty credential header, a filter nested past the decoder's depth.

The gateway used to check the decoded path and forward the raw one, and its HTTP client removed
dot segments on the way: `DELETE /v1/collections/c/documents/..` deleted the whole collection.
Every spelling of a dot segment (raw, percent-encoded in any case, mixed) and every encoded
slash is now 400 problem+json before any credential is looked at, through nginx and straight
at the gateway, and the collection and its documents are still there afterwards.

Requests are sent with http.client: it sends the path as written (httpx would remove the dot
segments before they left the test)."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import httpx
import pytest
from rag_devstack import NativeStack

from tests.e2e.gateway.conftest import Edge

pytestmark = pytest.mark.e2e

DOTS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    "%2E%2e",
    "%2e.",
    ".%2E",
    "%2e",
    "%2E",
]
DOCUMENTS = {"keep": "Enzymes speed up reactions.", "also": "Catalysts lower the energy."}


@pytest.fixture(scope="module")
def stack(full_stack: NativeStack) -> NativeStack:
    """The folder's stack (nginx, gateway, two query replicas); this module has its own tenant."""
    return full_stack


@pytest.fixture(scope="module")
def writer(edge: Edge) -> dict[str, str]:
    return edge.bearer(edge.new_key("paths", ["ingest:write", "query:read"]))


def filled_collection(edge: Edge, writer: dict[str, str], name: str) -> None:
    assert edge.http.post("/v1/collections", json={"name": name}, headers=writer).status_code == 201
    posted = edge.http.post(
        f"/v1/collections/{name}/documents",
        json={"documents": [{"id": i, "text": t} for i, t in DOCUMENTS.items()]},
        headers=writer,
    )
    assert posted.status_code == 202, posted.text
    for job in posted.json()["jobs"]:
        assert edge.wait_job(job["job_id"], writer)["state"] == "succeeded"


def send_raw(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """(status, content type, body) of ``method path`` sent exactly as written."""
    parts = urlsplit(base)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def hostile_paths(collection: str) -> list[tuple[str, str]]:
    """(method, path) that name something other than what they seem to, once decoded."""
    documents = f"/v1/collections/{collection}/documents"
    found: list[tuple[str, str]] = []
    for dots in DOTS:
        found += [("DELETE", f"{documents}/{dots}"), ("GET", f"{documents}/{dots}")]
        found += [("PUT", f"{documents}/{dots}"), ("DELETE", f"/v1/collections/{dots}")]
        found += [("DELETE", f"{documents}/keep/{dots}"), ("GET", f"/v1/jobs/{dots}")]
    found += [
        ("DELETE", f"{documents}/..%2f.."),
        ("DELETE", f"{documents}/%2e%2e%2f%2e%2e"),
        ("GET", f"/v1/collections/{collection}%2fdocuments"),
        ("GET", f"/v1/collections/{collection}%2Fdocuments%2Fkeep"),
        ("DELETE", f"/v1/collections/other/..%2F{collection}"),
        ("DELETE", f"/v1/collections/other/../{collection}"),
        ("DELETE", f"/v1/./collections/{collection}"),
    ]
    return found


@pytest.mark.parametrize("entry", ["nginx", "gateway"])
def test_dot_segments_and_encoded_slashes_are_refused_and_nothing_is_deleted(
    stack: NativeStack, edge: Edge, writer: dict[str, str], entry: str
) -> None:
    collection = f"dots-{entry}"
    filled_collection(edge, writer, collection)
    base = stack.edge_url if entry == "nginx" else stack.api_url("gateway")
    wrong = []
    for method, path in hostile_paths(collection):
        for headers in (writer, {}):  # refused before any credential is looked at
            body = {"Content-Type": "application/json"} if method == "PUT" else {}
            status, kind, answer = send_raw(base, method, path, {**headers, **body})
            # nginx passes every one of them on as it is: the gateway refuses them.
            if (status, kind) != (400, "application/problem+json"):
                wrong.append((method, path, bool(headers), status, answer[:200]))
    assert not wrong, "\n".join(map(str, wrong))
    found = edge.http.get(f"/v1/collections/{collection}", headers=writer)
    assert found.status_code == 200, found.text
    assert found.json()["document_count"] == len(DOCUMENTS)
    for document_id in DOCUMENTS:
        kept = edge.http.get(
            f"/v1/collections/{collection}/documents/{document_id}", headers=writer
        )
        assert kept.status_code == 200, kept.text


def test_the_gateway_names_the_path_it_refuses(stack: NativeStack, writer: dict[str, str]) -> None:
    status, kind, answer = send_raw(
        stack.edge_url, "DELETE", "/v1/collections/c/documents/%2E%2e", writer
    )
    assert (status, kind) == (400, "application/problem+json")
    assert b"dot segment" in answer


def test_ordinary_ids_with_dots_still_work(edge: Edge, writer: dict[str, str]) -> None:
    """Dots inside a segment are ordinary characters: only whole `.`/`..` segments are refused."""
    assert edge.http.post("/v1/collections", json={"name": "dotted"}, headers=writer).is_success
    posted = edge.http.post(
        "/v1/collections/dotted/documents",
        json={"documents": [{"id": "v1.2..3", "text": "Versioned notes."}]},
        headers=writer,
    )
    assert edge.wait_job(posted.json()["jobs"][0]["job_id"], writer)["state"] == "succeeded"
    found = edge.http.get("/v1/collections/dotted/documents/v1.2..3", headers=writer)
    assert found.status_code == 200, found.text
    gone = edge.http.delete("/v1/collections/dotted/documents/v1.2..3", headers=writer)
    assert gone.status_code == 200, gone.text
    assert edge.http.get("/v1/collections/dotted", headers=writer).status_code == 200


def test_document_ids_made_of_dots_are_refused_at_creation(
    edge: Edge, writer: dict[str, str]
) -> None:
    assert edge.http.post("/v1/collections", json={"name": "nodots"}, headers=writer).is_success
    for document_id in (".", ".."):
        refused = edge.http.post(
            "/v1/collections/nodots/documents",
            json={"documents": [{"id": document_id, "text": "x"}]},
            headers=writer,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "documents[0].id"


def test_an_empty_x_api_key_header_counts_as_absent(edge: Edge, writer: dict[str, str]) -> None:
    """A client (or a proxy) that sends `X-API-Key:` empty beside a valid bearer key."""
    assert edge.http.post("/v1/collections", json={"name": "emptyhdr"}, headers=writer).is_success
    found = edge.http.post(
        "/v1/collections/emptyhdr/search",
        json={"query": "anything"},
        headers={**writer, "X-API-Key": ""},
    )
    assert found.status_code == 200, found.text
    # Without another credential an empty one is still no credential.
    alone = edge.http.get("/v1/collections", headers={"X-API-Key": ""})
    assert alone.status_code == 401, alone.text


def test_a_where_parameter_nested_too_deeply_is_named(edge: Edge, writer: dict[str, str]) -> None:
    assert edge.http.post("/v1/collections", json={"name": "deepwhere"}, headers=writer).is_success
    depth = 1_200  # past the JSON decoder's depth, within nginx's 8 KiB request line
    response = edge.http.get(
        "/v1/collections/deepwhere/documents",
        params={"where": "[" * depth + "]" * depth},
        headers=writer,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == "where"
    assert problem["detail"].startswith("where:")
    assert "body" not in problem["detail"]
    # A where nested within the decoder's depth is still judged by the filter's own rules.
    shallow = edge.http.get(
        "/v1/collections/deepwhere/documents",
        params={"where": '{"$and": [{"a": 1}, {"b": 2}]}'},
        headers=writer,
    )
    assert shallow.status_code == 200, shallow.text


def test_every_service_is_still_ready(stack: NativeStack) -> None:
    for service in ("gateway", "ingest", "query"):
        assert httpx.get(f"{stack.health_url(service)}/ready", timeout=10).status_code == 200
