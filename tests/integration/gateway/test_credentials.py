"""Credentials keep their limits: a JWT's `collections` claim is a list or the token is
refused, `aud` and `iss` are checked when JWT_AUDIENCE and JWT_ISSUER are set, and an
administrator acting in another tenant (X-RAG-Tenant) keeps its key's limits."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.integration.gateway.conftest import ADMIN_KEY, JWT_SECRET, GatewayFactory

pytestmark = pytest.mark.integration


def token(**claims: Any) -> dict[str, str]:
    payload = {"tenant": "acme", "scope": "query:read ingest:read", "exp": int(time.time()) + 300}
    signed = jwt.encode({**payload, **claims}, JWT_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {signed}"}


def refused(response: Any, *words: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail


@pytest.mark.parametrize(
    "claim", ["handbook", {"handbook": True}, 7, None, ["handbook", 7], [None]]
)
def test_a_collections_claim_that_is_not_a_list_of_names_is_refused(
    gateway: GatewayFactory, claim: object
) -> None:
    with gateway() as client:
        refused(client.get("/v1/system", headers=token(collections=claim)), "'collections'")


def test_a_collections_list_limits_the_token(gateway: GatewayFactory) -> None:
    with gateway() as client:
        limited = token(collections=["handbook"])
        assert client.get("/v1/system", headers=limited).status_code == 200
        # Another collection: refused by the gateway as if it did not exist (never forwarded).
        other = client.get("/v1/collections/payroll", headers=limited)
        assert other.status_code == 404, other.text
        # The allowed one is forwarded (and nothing answers behind this gateway).
        assert client.get("/v1/collections/handbook", headers=limited).status_code == 502
        # No claim at all: every collection of the tenant, as before.
        assert client.get("/v1/collections/payroll", headers=token()).status_code == 502


def test_audience_and_issuer_are_not_required_unless_configured(gateway: GatewayFactory) -> None:
    with gateway() as client:
        for claims in ({}, {"aud": "anything"}, {"iss": "https://idp.example"}):
            assert client.get("/v1/system", headers=token(**claims)).status_code == 200, claims


def test_configured_audience_and_issuer_must_match(gateway: GatewayFactory) -> None:
    with gateway(jwt_audience="rag-engine", jwt_issuer="https://idp.example") as client:
        good = {"aud": "rag-engine", "iss": "https://idp.example"}
        assert client.get("/v1/system", headers=token(**good)).status_code == 200
        # `aud` may be a list that names this deployment among others (RFC 7519 4.1.3).
        listed = {**good, "aud": ["other-app", "rag-engine"]}
        assert client.get("/v1/system", headers=token(**listed)).status_code == 200
        refused(client.get("/v1/system", headers=token(iss=good["iss"])), "'aud'", "JWT_AUDIENCE")
        refused(
            client.get("/v1/system", headers=token(**{**good, "aud": "other-app"})),
            "'aud'",
            "JWT_AUDIENCE",
        )
        refused(client.get("/v1/system", headers=token(aud=good["aud"])), "'iss'", "JWT_ISSUER")
        refused(
            client.get("/v1/system", headers=token(**{**good, "iss": "https://evil.example"})),
            "'iss'",
            "JWT_ISSUER",
        )


def _admin_key(client: TestClient[Litestar], **limits: object) -> dict[str, str]:
    created = client.post(
        "/v1/admin/keys",
        json={"tenant": "ops", "scopes": ["admin"], **limits},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def test_an_admin_acting_in_another_tenant_keeps_its_keys_limits(gateway: GatewayFactory) -> None:
    # The deployment's default rate is low; this admin key has its own, higher one.
    with gateway(rate_limit_per_minute=3) as client:
        admin = _admin_key(
            client,
            collections=["handbook"],
            requests_per_minute=1000,
            ingest_bytes_per_day=1000,
        )
        acting = {**admin, "X-RAG-Tenant": "acme"}
        for _ in range(5):  # over the default of 3, within the key's own 1000
            answer = client.get("/v1/system", headers=acting)
            assert answer.status_code == 200, answer.text
            assert answer.json()["tenant"] == "acme"
        # Its collections: another one is refused by the gateway, never forwarded.
        assert client.get("/v1/collections/payroll", headers=acting).status_code == 404
        assert client.get("/v1/collections/handbook", headers=acting).status_code == 502
        # Its daily quota of 1000 bytes.
        over = client.post(
            "/v1/collections/handbook/documents",
            content=b'{"documents": [{"text": "' + b"x" * 2000 + b'"}]}',
            headers={**acting, "content-type": "application/json"},
        )
        assert over.status_code == 429, over.text
        assert over.json()["bytes_per_day"] == 1000
