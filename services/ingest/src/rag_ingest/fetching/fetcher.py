"""Fetch a URL safely: public addresses only (unless allow-listed), pinned to the address
that was checked, redirects capped and re-checked, size and time limited.

Server-side request forgery is the risk: a user asking the worker to fetch
http://169.254.169.254/ or http://redis:6379/. Every hop's host is resolved here and each
address must be globally routable, or inside FETCH_ALLOW_NETWORKS. The request then goes to
that very address (with the original Host header and TLS server name), so a DNS answer that
changes between check and connect (rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
USER_AGENT = "rag-engine-ingest/0.1 (+self-hosted)"


class FetchRefused(Exception):
    """The URL may not or cannot be fetched; the message says why (it is shown to the user)."""


class FetchFailed(Exception):
    """A transient problem (timeout, 5xx, connection reset): retrying later may work."""


@dataclass(frozen=True)
class FetchPolicy:
    timeout_seconds: float
    max_bytes: int
    max_redirects: int
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse_networks(cls, spec: str) -> tuple[IPNetwork, ...]:
        networks = []
        for part in spec.split(","):
            if part.strip():
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
        return tuple(networks)


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content: bytes
    content_type: str | None


def check_url_syntax(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {parts.scheme or 'none'}")
    if not parts.hostname:
        raise FetchRefused("the URL has no host")
    if parts.username or parts.password:
        raise FetchRefused("URLs with credentials are not fetched")
    return urlunsplit(parts._replace(fragment=""))


NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), which is what
    is finally reached; Python calls some of these "global" whatever they embed."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


async def resolve_allowed(host: str, port: int, allow: Sequence[IPNetwork]) -> str:
    """One address of ``host`` that policy allows; refuses if any of its addresses is not."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        ip = _embedded_ipv4(ipaddress.ip_address(address.split("%")[0]))
        if any(ip in network for network in allow):
            continue
        if not ip.is_global or ip.is_multicast:
            kind = (
                "loopback"
                if ip.is_loopback
                else "link-local"
                if ip.is_link_local
                else "private"
                if ip.is_private
                else "non-public"
            )
            # The address itself is not shown: that would let users map internal DNS.
            raise FetchRefused(
                f"{host} resolves to a {kind} address; fetching it is not allowed "
                "(FETCH_ALLOW_NETWORKS can permit it)"
            )
    if not addresses:
        raise FetchRefused(f"{host} has no address")
    return addresses[0]


async def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy``; follows at most ``max_redirects`` checked redirects.
    The whole fetch — resolving, every hop, the body — has ``timeout_seconds``."""
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            return await _fetch(url, policy)
    except TimeoutError:
        raise FetchFailed(f"fetching {url} took longer than {policy.timeout_seconds:g}s") from None


async def _fetch(url: str, policy: FetchPolicy) -> Fetched:
    deadline = time.monotonic() + policy.timeout_seconds
    current = check_url_syntax(url)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        for _hop in range(policy.max_redirects + 1):
            parts = urlsplit(current)
            assert parts.hostname is not None
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await resolve_allowed(parts.hostname, port, policy.allow_networks)
            pinned_host = f"[{address}]" if ":" in address else address
            pinned = urlunsplit(parts._replace(netloc=f"{pinned_host}:{port}"))
            host_header = parts.netloc.rsplit("@", 1)[-1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchFailed(f"fetching {url} took longer than {policy.timeout_seconds:g}s")
            try:
                async with client.stream(
                    "GET",
                    pinned,
                    headers={
                        "Host": host_header,
                        "User-Agent": USER_AGENT,
                        "Accept": "text/html,application/pdf,text/*,*/*;q=0.5",
                    },
                    extensions={"sni_hostname": parts.hostname},
                    timeout=httpx.Timeout(remaining),
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchRefused(f"{current} redirects without a Location")
                        current = check_url_syntax(urljoin(current, location))
                        continue
                    if response.status_code >= 500 or response.status_code == 429:
                        raise FetchFailed(f"{current} answered {response.status_code}")
                    if response.status_code >= 400:
                        raise FetchRefused(f"{current} answered {response.status_code}")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > policy.max_bytes:
                        raise FetchRefused(
                            f"{current} is {declared} bytes; the limit is {policy.max_bytes} "
                            "(MAX_FILE_BYTES)"
                        )
                    body = bytearray()
                    async for piece in response.aiter_bytes():
                        body += piece
                        if len(body) > policy.max_bytes:
                            raise FetchRefused(
                                f"{current} is larger than {policy.max_bytes} bytes "
                                "(MAX_FILE_BYTES)"
                            )
                    return Fetched(current, bytes(body), response.headers.get("content-type"))
            except httpx.TimeoutException:
                raise FetchFailed(
                    f"fetching {url} took longer than {policy.timeout_seconds:g}s"
                ) from None
            except httpx.TransportError as exc:
                raise FetchFailed(f"cannot fetch {current} ({type(exc).__name__})") from None
    raise FetchRefused(f"more than {policy.max_redirects} redirects (FETCH_MAX_REDIRECTS)")


def extract_links(html: bytes, base_url: str, *, same_domain: bool) -> list[str]:
    """Absolute http(s) links of a page, fragment-free, in page order, without repeats."""
    from bs4 import BeautifulSoup  # noqa: PLC0415

    soup = BeautifulSoup(html, "html.parser")
    base_host = urlsplit(base_url).hostname
    seen: dict[str, None] = {}
    for anchor in soup.find_all("a", href=True):
        href = str(anchor["href"]).strip()
        if not href or href.startswith(("mailto:", "javascript:", "tel:", "#")):
            continue
        absolute = urlunsplit(urlsplit(urljoin(base_url, href))._replace(fragment=""))
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https"):
            continue
        if same_domain and parts.hostname != base_host:
            continue
        seen.setdefault(absolute, None)
    return list(seen)
