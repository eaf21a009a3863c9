"""SSRF: addresses that are private, or that embed a private IPv4 in IPv6, are refused."""

from __future__ import annotations

import pytest
from rag_ingest.fetching.fetcher import FetchPolicy, FetchRefused, check_url_syntax, resolve_allowed


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::",
        "64:ff9b:1::a00:1",
    ],
)
async def test_non_public_addresses_are_refused(host: str) -> None:
    with pytest.raises(FetchRefused, match="not allowed"):
        await resolve_allowed(host, 80, ())


async def test_allow_list_permits_a_network() -> None:
    allow = FetchPolicy.parse_networks("127.0.0.0/8")
    assert await resolve_allowed("127.0.0.2", 80, allow) == "127.0.0.2"
    assert await resolve_allowed("8.8.8.8", 80, ()) == "8.8.8.8"


@pytest.mark.parametrize(
    "url", ["ftp://x.org/", "file:///etc/passwd", "http://u:p@x.org/", "http:///x"]
)
def test_url_syntax_is_checked(url: str) -> None:
    with pytest.raises(FetchRefused):
        check_url_syntax(url)
