"""SSRF: addresses that are private, or that embed a private IPv4 in IPv6, are refused."""

from __future__ import annotations

import pytest
from rag_ingest.fetching.fetcher import (
    FetchPolicy,
    FetchRefused,
    check_url_syntax,
    extract_links,
    fetch,
    resolve_allowed,
)


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
        # A private or loopback IPv4 address inside an IPv6 one (issue 22):
        "::127.0.0.1",  # IPv4-compatible (deprecated, and "global" to Python)
        "::10.0.0.1",
        "::169.254.169.254",
        "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
        "::ffff:10.0.0.1",  # IPv4-mapped
        "2002:7f00:1::",  # 6to4
        "2002:a00:1::1",
        "64:ff9b::7f00:1",  # NAT64
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "2001:0:a00:1::f7f7:f7f7",  # Teredo, server 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64: where its IPv4 address sits is local
    ],
)
async def test_non_public_addresses_are_refused(host: str) -> None:
    with pytest.raises(FetchRefused, match="not allowed"):
        await resolve_allowed(host, 80, ())


@pytest.mark.parametrize(
    "host", ["::8.8.8.8", "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808"]
)
async def test_ipv6_that_embeds_a_public_ipv4_address_is_fetched(host: str) -> None:
    assert await resolve_allowed(host, 80, ()) == host


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


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1/", "host"),
        ("http://[zz]/", "host"),
        ("http://127.0.0.1:abc/", "port"),
        ("http://[::1]:99999/", "port"),
        ("http://example.org:-1/", "port"),
        (f"http://{'a' * 64}.example.org/", "host"),  # a DNS label is at most 63 characters
        ("http://a..example.org/", "host"),
    ],
)
def test_malformed_hosts_and_ports_are_refused_with_a_reason(url: str, reason: str) -> None:
    """Not a ValueError from urllib (a 500 at submit, a crash retried until dead in the
    worker): a refusal whose sentence says what is wrong."""
    with pytest.raises(FetchRefused, match=reason):
        check_url_syntax(url)


async def test_fetching_a_malformed_url_is_refused_not_crashed() -> None:
    policy = FetchPolicy(timeout_seconds=5, max_bytes=1000, max_redirects=2)
    for url in ("http://[::1/", "http://127.0.0.1:abc/", f"http://{'a' * 64}.org/"):
        with pytest.raises(FetchRefused):
            await fetch(url, policy)


def test_links_that_cannot_be_parsed_are_skipped() -> None:
    page = (
        b'<a href="http://[::1/">a</a> <a href="http://[zz]/">b</a> '
        b'<a href="http://x.org:abc/">c</a> <a href="/fine">d</a>'
    )
    links = extract_links(page, "http://x.org/", same_domain=False)
    assert links == ["http://x.org:abc/", "http://x.org/fine"]


def test_an_international_host_is_fetched_by_its_ascii_name() -> None:
    """It passed the check, then httpx raised UnicodeEncodeError writing the Host header."""

    assert check_url_syntax("http://Bücher.example:81/a?x=1#f") == (
        "http://xn--bcher-kva.example:81/a?x=1"
    )
    # An ASCII URL is kept as written (its document id is made from it).
    assert check_url_syntax("https://EXAMPLE.com/p#f") == "https://EXAMPLE.com/p"
