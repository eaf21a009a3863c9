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
import functools
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
USER_AGENT = "rag-engine-ingest/0.1 (+self-hosted)"
ACCEPT_ENCODING = "gzip, deflate"  # what BodyDecoder undoes; never br or zstd
DECODE_PIECE_BYTES = 64 * 1024  # the most one decompression step produces
_ZLIB_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,  # zlib-wrapped, as RFC 9110 says; raw deflate is tried too
}


class FetchRefused(Exception):
    """The URL may not or cannot be fetched; the message says why (it is shown to the user)."""


class FetchFailed(Exception):
    """A transient problem (timeout, 5xx, connection reset): retrying later may work."""


class TooLarge(FetchRefused):
    """The body is larger than the policy's ``max_bytes`` (found before it is all read)."""


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
    # The content-coding ``content`` is still in (gzip or deflate), None once decoded: the
    # worker receives the body as sent, and the parser pool decodes it (``decode_body``).
    coding: str | None = None


def check_url_syntax(url: str) -> str:
    """``url`` without its fragment, if it is one the fetcher can fetch: FetchRefused, saying
    why, for any other (urllib's ValueErrors included: a bracketed host that is no IPv6
    address, a port that is no number from 0 to 65535)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", "'zz' does not appear to be an IPv4..."
        raise FetchRefused(f"the URL's host cannot be read ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {parts.scheme or 'none'}")
    if not parts.hostname:
        raise FetchRefused("the URL has no host")
    if parts.username or parts.password:
        raise FetchRefused("URLs with credentials are not fetched")
    try:
        port = parts.port
    except ValueError as exc:  # "Port could not be cast to integer value as 'abc'"
        raise FetchRefused(f"the URL's port is not a number from 0 to 65535 ({exc})") from None
    try:
        host = parts.hostname.encode("idna").decode("ascii")  # as resolving it does
    except UnicodeError:
        raise FetchRefused(
            f"the URL's host {parts.hostname[:100]!r} is not a valid host name (a label is "
            "empty or longer than 63 characters)"
        ) from None
    if not parts.hostname.isascii():
        # In its ASCII form ("bücher.example" as "xn--bcher-kva.example"): the Host header
        # and the TLS server name must be ASCII (httpx raised UnicodeEncodeError). An ASCII
        # URL is kept as written: its document id is made from it.
        parts = parts._replace(netloc=host + ("" if port is None else f":{port}"))
    return urlunsplit(parts._replace(fragment=""))


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291), still routable
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
# Local-use NAT64 (RFC 8215) is not globally reachable, and its operator chooses where in
# it the IPv4 address sits: it is refused as a whole (FETCH_ALLOW_NETWORKS can permit it).
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


def _reached(ip: IPAddress) -> list[IPAddress]:
    """The addresses a connection to ``ip`` ends at: the IPv4 addresses an IPv6 one carries
    (compatible, mapped, translated, 6to4, Teredo server and client, NAT64), else ``ip``.
    Python calls some of these "global" whatever they carry (``::127.0.0.1`` among them)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in IPV4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, which are themselves
        return [ipaddress.IPv4Address(int(ip))]
    if ip in IPV4_TRANSLATED or ip in NAT64_WELL_KNOWN:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return [ip]


async def resolve_allowed(host: str, port: int, allow: Sequence[IPNetwork]) -> str:
    """One address of ``host`` that policy allows; refuses if any of its addresses is not."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    reached = [ip for a in addresses for ip in _reached(ipaddress.ip_address(a.split("%")[0]))]
    for ip in reached:
        if any(ip in network for network in allow):
            continue
        if not ip.is_global or ip.is_multicast or ip in NAT64_LOCAL_USE:
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


class BodyDecoder:
    """Undoes a response's Content-Encoding a bounded piece at a time, counting MAX_FILE_BYTES
    on the bytes received and on the decoded bytes as they are produced.

    httpx decodes each network read whole (64 KB of gzip can be 64 MB) and undoes as many
    codings as the header names (``gzip, gzip``: gigabytes from two kilobytes). Here each
    step yields at most DECODE_PIECE_BYTES, so the decoded bytes held never pass the limit by
    more than one piece. At most one coding (gzip or deflate) is accepted: no server needs
    to stack them (compressing compressed data gains nothing), and each extra layer only
    multiplies what a few bytes expand to, so a stack is refused rather than decoded.
    """

    def __init__(self, url: str, content_encoding: str, max_bytes: int) -> None:
        self.url, self.max_bytes = url, max_bytes
        self.received = self.decoded = 0
        self.coding = accepted_coding(url, content_encoding)
        self._inflater = zlib.decompressobj(_ZLIB_WBITS[self.coding]) if self.coding else None
        self._first = True

    def decode(self, raw: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next ``raw`` bytes of the body; raises TooLarge as soon
        as the bytes received, or those decoded, pass ``max_bytes``."""
        self.received += len(raw)
        if self.received > self.max_bytes:
            raise self._too_large()
        if self._inflater is None:
            yield self._counted(raw)  # a network read: httpx reads at most 64 KB at a time
            return
        first, self._first = self._first, False
        pending = raw
        while not self._inflater.eof:  # bytes after the end are ignored, as httpx does
            try:
                piece = self._inflater.decompress(pending, DECODE_PIECE_BYTES)
            except zlib.error as exc:
                if first and self.coding == "deflate" and not self.decoded:
                    # Some servers send raw deflate, without the zlib wrapper.
                    first, self._inflater = False, zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise FetchRefused(
                    f"{self.url}: its {self.coding} body cannot be decoded ({exc})"
                ) from None
            pending = self._inflater.unconsumed_tail
            if piece:
                yield self._counted(piece)
            if not pending and len(piece) < DECODE_PIECE_BYTES:
                return  # all input used and no output waiting

    def _counted(self, piece: bytes) -> bytes:
        self.decoded += len(piece)
        if self.decoded > self.max_bytes:
            raise self._too_large()
        return piece

    def _too_large(self) -> TooLarge:
        return too_large(self.url, self.max_bytes)


def accepted_coding(url: str, content_encoding: str) -> str | None:
    """The one content-coding of a response (None: identity); FetchRefused for a stack of
    them or one that is not gzip or deflate."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > 1:
        raise FetchRefused(
            f"{url} is sent with Content-Encoding {content_encoding!r}: more than one "
            "content-coding is refused (stacked codings are a decompression bomb)"
        )
    if codings and codings[0] not in _ZLIB_WBITS:
        raise FetchRefused(
            f"{url} is sent with Content-Encoding {codings[0]!r}, which is not accepted "
            "(gzip and deflate are)"
        )
    return codings[0] if codings else None


def too_large(url: str, max_bytes: int) -> TooLarge:
    return TooLarge(f"{url} is larger than {max_bytes} bytes (MAX_FILE_BYTES)")


def decode_body(url: str, raw: bytes, coding: str, max_bytes: int) -> bytes:
    """A fetched body undone from its content-coding, within ``max_bytes`` (TooLarge past
    it). Run in the parser pool: how long decoding takes depends on the page, and the worker
    keeps a heartbeat."""
    decoder = BodyDecoder(url, coding, max_bytes)
    decoded = bytearray()
    for start in range(0, len(raw), DECODE_PIECE_BYTES):
        for piece in decoder.decode(raw[start : start + DECODE_PIECE_BYTES]):
            decoded += piece
    return bytes(decoded)


async def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy``; follows at most ``max_redirects`` checked redirects.
    The whole fetch — resolving, every hop, the body — has ``timeout_seconds``."""
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            return await _fetch(url, policy)
    except TimeoutError:
        raise FetchFailed(f"fetching {url} took longer than {policy.timeout_seconds:g}s") from None


@functools.cache
def _tls() -> ssl.SSLContext:
    """The verifying TLS context of every fetch: building one loads the CA bundle (about 30 ms
    of CPU), which a crawl of many pages would pay per page."""
    return httpx.create_ssl_context(trust_env=False)


async def _fetch(url: str, policy: FetchPolicy) -> Fetched:
    deadline = time.monotonic() + policy.timeout_seconds
    current = check_url_syntax(url)
    async with httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        verify=_tls(),
        event_hooks={"response": [_refuse_unreadable_location]},
    ) as client:
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
                        "Accept-Encoding": ACCEPT_ENCODING,
                    },
                    extensions={"sni_hostname": parts.hostname},
                    timeout=httpx.Timeout(remaining),
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchRefused(f"{current} redirects without a Location")
                        current = check_url_syntax(_redirect_target(current, location))
                        continue
                    if response.status_code >= 500 or response.status_code == 429:
                        raise FetchFailed(f"{current} answered {response.status_code}")
                    if response.status_code >= 400:
                        raise FetchRefused(f"{current} answered {response.status_code}")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > policy.max_bytes:
                        raise TooLarge(
                            f"{current} is {declared} bytes; the limit is {policy.max_bytes} "
                            "(MAX_FILE_BYTES)"
                        )
                    # A stacked or unknown coding is refused before a byte of the body is read.
                    coding = accepted_coding(
                        current, ", ".join(response.headers.get_list("content-encoding"))
                    )
                    body = bytearray()
                    async for raw in response.aiter_raw():  # raw: httpx would decode it whole
                        body += raw
                        if len(body) > policy.max_bytes:
                            raise too_large(current, policy.max_bytes)
                    return Fetched(
                        current, bytes(body), response.headers.get("content-type"), coding
                    )
            except httpx.TimeoutException:
                raise FetchFailed(
                    f"fetching {url} took longer than {policy.timeout_seconds:g}s"
                ) from None
            except httpx.TransportError as exc:
                raise FetchFailed(f"cannot fetch {current} ({type(exc).__name__})") from None
    raise FetchRefused(f"more than {policy.max_redirects} redirects (FETCH_MAX_REDIRECTS)")


async def _refuse_unreadable_location(response: httpx.Response) -> None:
    """httpx reads a redirect's Location before it hands the response over, even when not
    following it, and answers one it cannot read with RemoteProtocolError: a transport error,
    retried until the job is dead. It is the page's fault, refused here for good."""
    location = response.headers.get("location")
    if not response.has_redirect_location or location is None:
        return
    try:
        httpx.URL(location)
    except httpx.InvalidURL as exc:
        raise FetchRefused(
            f"redirected to {location[:200]!r}, a URL that cannot be read ({exc})"
        ) from None


def _redirect_target(current: str, location: str) -> str:
    try:
        return urljoin(current, location)
    except ValueError as exc:  # urljoin parses the Location as urlsplit does
        raise FetchRefused(
            f"{current} redirects to {location[:200]!r}, whose host cannot be read ({exc})"
        ) from None


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
        try:
            absolute = urlunsplit(urlsplit(urljoin(base_url, href))._replace(fragment=""))
            parts = urlsplit(absolute)
        except ValueError:  # a malformed link is not followed; it does not end the crawl
            continue
        if parts.scheme not in ("http", "https"):
            continue
        if same_domain and parts.hostname != base_host:
            continue
        seen.setdefault(absolute, None)
    return list(seen)
