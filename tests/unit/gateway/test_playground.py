"""The gateway serves the playground: public, with the right types, under a strict
Content-Security-Policy that its own files satisfy (nothing inline, nothing from elsewhere)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from rag_config import GatewaySettings
from rag_gateway.app import create_app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    # The lifespan builds its Redis and HTTP clients without connecting: no server is needed.
    with TestClient(create_app(GatewaySettings(_env_file=None))) as test_client:
        yield test_client


def test_the_page_is_public_html_under_a_strict_policy(client: TestClient[Litestar]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert '<script type="module" src="/playground/app.js"></script>' in page.text


def test_every_asset_the_page_names_is_served_with_its_type(client: TestClient[Litestar]) -> None:
    page = client.get("/").text
    named = set(re.findall(r'(?:src|href)="(/playground/[^"]+)"', page))
    assert named == {"/playground/app.js", "/playground/app.css", "/playground/favicon.svg"}
    expected = {
        "/playground/app.js": "text/javascript; charset=utf-8",
        "/playground/app.css": "text/css; charset=utf-8",
        "/playground/favicon.svg": "image/svg+xml",
    }
    for path, media_type in expected.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == media_type, path
        assert response.content, path


def test_nothing_inline_and_nothing_from_elsewhere(client: TestClient[Litestar]) -> None:
    """What the policy would refuse in a browser: inline script or style, other origins."""
    html = client.get("/").text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    assert re.findall(r'(?:src|href)="(?!/[^/]|#)[^"]*"', html) == []  # this origin's only
    for path in ("/", "/playground/app.js", "/playground/app.css"):
        assert re.findall(r"https?://", client.get(path).text) == [], path
    script = client.get("/playground/app.js").text
    assert "innerHTML" not in script  # API text goes in as text, never as markup
    assert "eval(" not in script


def test_a_known_version_is_not_sent_again(client: TestClient[Litestar]) -> None:
    first = client.get("/playground/app.js")
    again = client.get("/playground/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert first.headers["cache-control"] == "no-cache"


def test_only_the_playground_files_are_served(client: TestClient[Litestar]) -> None:
    for path in (
        "/playground/routes.py",
        "/playground/__init__.py",
        "/playground/..%2Froutes.py",
        "/playground/static",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json", path


def test_the_playground_is_not_part_of_the_api_schema(client: TestClient[Litestar]) -> None:
    paths = client.get("/schema/gateway/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/playground")]
    # and /v1 stays the API's: the page does not shadow it
    assert client.get("/v1/collections").status_code == 401
