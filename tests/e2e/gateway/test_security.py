"""Authentication and tenant isolation, for every route of the public API: the cases are
generated from the gateway's route table, so a new endpoint cannot be left out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

import httpx
import jwt
import pytest
from rag_config import GatewaySettings
from rag_devstack import NativeStack
from rag_gateway.app import create_app as create_gateway
from rag_gateway.routing import TABLE

from tests.e2e.gateway.conftest import ADMIN_KEY, INTERNAL_TOKEN, JWT_SECRET, Edge, make_jwt
from tests.support.logs import leaked_secrets

pytestmark = pytest.mark.e2e
SECRET_MARK = "zebra-secret-7731"


def _routes(
    collection: str, job_id: str, upstream: str | None = None
) -> list[tuple[str, str, str]]:
    """(method, path, scope) of every public route (of one ``upstream``, if given), with real
    identifiers filled in."""
    found = []
    for pattern, methods in TABLE:
        path = pattern.pattern.strip("^$")
        path = path.replace("(?P<collection>[^/]+)", collection).replace("(?P<job>[^/]+)", job_id)
        path = path.replace("(upload|url)", "upload")
        path = re.sub(r"\(\?P<\w+>\[\^/\]\+\)", "doc-1", path).replace("[^/]+", "doc-1")
        assert not re.search(r"[()\[\]?^$]", path), path
        for method, (service, scope, _kind) in methods.items():
            if upstream in (None, service):
                found.append((method, path, scope))
    return found


def _gateway_routes() -> list[tuple[str, str, str]]:
    """(method, path, scope) of the gateway's own /v1 routes (not the forwarding catch-all),
    read from its app: a new one is in the matrix without anyone adding it."""
    app = create_gateway(GatewaySettings(_env_file=None))
    found = []
    for route in app.routes:
        if not route.path.startswith("/v1/") or "{rest" in route.path:
            continue
        path = re.sub(r"\{[^}:]+:str\}", "abc", route.path)
        for method in sorted(getattr(route, "methods", set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path, "admin" if "/admin/" in path else "any"))
    assert ("GET", "/v1/system", "any") in found
    return found


def _body(method: str, path: str, collection: str) -> dict:
    if method not in ("POST", "PUT"):
        return {}
    if path.endswith("/upload"):
        return {"files": [("file", ("a.txt", b"hello", "text/plain"))]}
    if path == "/v1/collections":
        return {"json": {"name": collection}}
    if path == "/v1/chat/completions":
        return {"json": {"model": collection, "messages": [{"role": "user", "content": "hi"}]}}
    if path.endswith(("/search", "/query")):
        return {"json": {"query": "animals"}}
    if path.endswith("/documents"):
        return {"json": {"documents": [{"text": "x"}]}}
    return {"json": {"text": "x", "url": "http://example.invalid/"}}


@pytest.fixture(scope="module")
def tenant_a(edge: Edge) -> dict:
    """Tenant A: a collection with a secret document, and one of its job ids."""
    key = edge.new_key("tenant-a", ["ingest:write", "query:read"])
    auth = edge.bearer(key)
    assert edge.http.post("/v1/collections", json={"name": "zoo"}, headers=auth).status_code == 201
    response = edge.http.post(
        "/v1/collections/zoo/documents",
        json={"documents": [{"id": "doc-1", "text": f"The animals eat at noon. {SECRET_MARK}"}]},
        headers=auth,
    )
    job_id = response.json()["jobs"][0]["job_id"]
    assert edge.wait_job(job_id, auth)["state"] == "succeeded"
    edge.wait_searchable("zoo", "animals", auth, mode="lexical")
    hits = edge.http.post("/v1/collections/zoo/search", json={"query": "animals"}, headers=auth)
    assert SECRET_MARK in hits.text  # A itself can read it
    return {"key": key, "job_id": job_id}


def test_every_route_refuses_missing_wrong_revoked_and_bad_tokens(
    edge: Edge, tenant_a: dict
) -> None:
    revoked = edge.new_key("tenant-a", ["ingest:write", "query:read"])
    key_id = revoked.split("_")[1]
    assert edge.http.delete(f"/v1/admin/keys/{key_id}", headers=edge.admin()).status_code == 200
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(
        b"="
    )
    claims = {"tenant": "tenant-a", "scope": "admin", "exp": int(time.time()) + 300}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    alg_none = f"{header.decode()}.{payload.decode()}."
    # HS/RS confusion: claims RS256 but is an HMAC made with what would be the public key.
    rs_header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    signing_input = rs_header.rstrip(b"=") + b"." + payload
    signature = hmac.new(JWT_SECRET.encode(), signing_input, hashlib.sha256).digest()
    confused = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    bad = {
        "no credential": {},
        "not bearer": {"Authorization": "Basic dXNlcjpwdw=="},
        "unknown key": edge.bearer("rag_0123456789abcdef_" + "x" * 43),
        "wrong secret": edge.bearer(tenant_a["key"][:-4] + "AAAA"),
        "revoked key": edge.bearer(revoked),
        "expired jwt": edge.bearer(make_jwt("tenant-a", "admin", expires_in=-60)),
        "forged jwt": edge.bearer(make_jwt("tenant-a", "admin", secret="x" * 48)),
        "jwt without exp": edge.bearer(
            jwt.encode({"tenant": "tenant-a", "scope": "admin"}, JWT_SECRET)
        ),
        "alg none": edge.bearer(alg_none),
        "alg confusion": edge.bearer(confused),
        "garbage": edge.bearer("not.a.token"),
    }
    routes = [*_routes("zoo", tenant_a["job_id"]), *_gateway_routes()]
    assert ("DELETE", "/v1/admin/keys/abc", "admin") in routes
    for method, path, _scope in routes:
        for name, headers in bad.items():
            response = edge.http.request(
                method, path, headers=headers, **_body(method, path, "zoo")
            )
            assert response.status_code == 401, (name, method, path, response.text)
            assert SECRET_MARK not in response.text


def test_every_gateway_route_is_in_the_public_openapi_document(edge: Edge) -> None:
    paths = edge.http.get("/schema/openapi.json").json()["paths"]
    for method, path, _scope in _gateway_routes():
        template = path.replace("/abc", "/{key_id}")
        assert method.lower() in paths.get(template, {}), (method, template)


def test_every_route_needs_its_scope(edge: Edge, tenant_a: dict) -> None:
    only = {
        "ingest:read": edge.new_key("tenant-a", ["query:read"]),
        "ingest:write": edge.new_key("tenant-a", ["ingest:read", "query:read"]),
        "query:read": edge.new_key("tenant-a", ["ingest:write"]),
        "admin": edge.new_key("tenant-a", ["ingest:write", "query:read"]),
    }
    token_without = {
        scope: make_jwt("tenant-a", "ingest:read") for scope in ("ingest:write", "query:read")
    }
    admin_routes = [route for route in _gateway_routes() if route[2] == "admin"]
    routes = [*_routes("zoo", tenant_a["job_id"]), *admin_routes]
    for method, path, scope in routes:
        response = edge.http.request(
            method, path, headers=edge.bearer(only[scope]), **_body(method, path, "zoo")
        )
        assert response.status_code == 403, (scope, method, path, response.text)
        if scope in token_without:
            jwt_response = edge.http.request(
                method,
                path,
                headers=edge.bearer(token_without[scope]),
                **_body(method, path, "zoo"),
            )
            assert jwt_response.status_code == 403, (scope, method, path)


def test_tenant_b_cannot_read_a_byte_of_tenant_a(edge: Edge, tenant_a: dict) -> None:
    b_key = edge.bearer(edge.new_key("tenant-b", ["ingest:write", "query:read"]))
    b_jwt = edge.bearer(make_jwt("tenant-b", "ingest:write query:read"))
    limited = edge.bearer(
        edge.new_key("tenant-a", ["ingest:write", "query:read"], collections=["other"])
    )
    outsiders = (("tenant-b key", b_key), ("tenant-b jwt", b_jwt), ("key limited", limited))
    routes = _routes("zoo", tenant_a["job_id"])
    # Reads first: A's collection and job do not exist for them.
    for method, path, _scope in routes:
        if method != "GET":
            continue
        for who, headers in outsiders:
            response = edge.http.get(path, headers=headers)
            assert SECRET_MARK not in response.text, (who, path)
            if "zoo" in path or tenant_a["job_id"] in path:
                assert response.status_code == 404, (who, path, response.status_code)
    # Then every route, writes included: they act on the caller's own tenant, never on A's.
    for method, path, _scope in routes:
        for who, headers in outsiders:
            response = edge.http.request(
                method, path, headers=headers, **_body(method, path, "zoo")
            )
            assert SECRET_MARK not in response.text, (who, method, path)
    a_auth = edge.bearer(tenant_a["key"])
    mine = edge.http.get("/v1/collections/zoo/documents/doc-1", headers=a_auth)
    assert mine.status_code == 200, mine.text
    assert SECRET_MARK in mine.text  # A's document is untouched
    assert [m["id"] for m in edge.http.get("/v1/models", headers=limited).json()["data"]] == []


def test_going_around_the_gateway_is_refused(full_stack: NativeStack, tenant_a: dict) -> None:
    for service in ("ingest", "query"):
        for method, path, _scope in _routes("zoo", tenant_a["job_id"], service):
            response = httpx.request(
                method, f"{full_stack.api_url(service)}{path}", headers={"X-RAG-Tenant": "tenant-a"}
            )
            assert response.status_code == 401, (service, method, path)
            assert SECRET_MARK not in response.text
        second = httpx.post(
            f"http://127.0.0.1:{full_stack.ports.query_2}/v1/collections/zoo/search",
            json={"query": "animals"},
        )
        assert second.status_code == 401
        # Health and readiness stay open for probes.
        assert httpx.get(f"{full_stack.api_url(service)}/health").status_code == 200


def test_no_secret_reaches_any_log(full_stack: NativeStack, edge: Edge, tenant_a: dict) -> None:
    """Runs last in this module: every request above (wrong, revoked and forged credentials,
    other tenants, the admin API) has been logged by nginx, the gateway and the services."""
    token = make_jwt("tenant-a", "query:read")
    assert (
        edge.http.post(
            "/v1/collections/zoo/search", json={"query": "animals"}, headers=edge.bearer(token)
        ).status_code
        == 200
    )
    logs = list(full_stack.log_dir.rglob("*.log"))
    names = {path.name for path in logs}
    assert {"gateway.log", "ingest.log", "query.log", "worker.log", "nginx-access.log"} <= names
    assert sum(len(path.read_text().splitlines()) for path in logs) > 100
    secrets = {
        "ADMIN_API_KEY": ADMIN_KEY,
        "JWT_SECRET": JWT_SECRET,
        "INTERNAL_TOKEN": INTERNAL_TOKEN,
        "tenant A's API key": tenant_a["key"],
        "a JWT": token,
    }
    assert leaked_secrets(full_stack.log_dir, secrets) == []
