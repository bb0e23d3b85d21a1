"""Downloading result images: only from public addresses, never with a token, within a deadline.

What RunComfy's result lists is not trusted. Each URL, and every redirect it leads to, must be
https and must resolve only to public addresses; the check is made when the connection is opened,
on the addresses actually connected to, so no redirect hop and no DNS answer can slip past it. The
one exception is the RunComfy base URL's own address and port when it is on loopback (local
development and the tests), where http is allowed too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from bot import metrics
from bot.errors import PermanentError, TransientError
from bot.pool import make_lean

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses to connect to; injectable so tests never need real DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_REFUSED = "the image link points to a place the bot does not download from"
_TOO_SLOW = "the image took longer than {seconds} s to download"
_FAILED = "the image could not be downloaded ({reason})"
_MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64 (RFC 6052): a gateway reaches the IPv4 address embedded in the last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeLinkError(PermanentError):
    """A link the bot refuses to fetch (scheme, credentials or address); nothing was sent."""


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a public unicast address (not loopback, private, link-local, …)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 is judged as the IPv4 address it reaches.
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and not is_public(ip.sixtofour):
            return False
        if ip.is_site_local:
            return False
    # is_global alone lets multicast through (and, before Python 3.13, some reserved ranges).
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_unspecified
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Where downloads may go: public https, plus RunComfy's own loopback origin if it has one."""

    loopback_hosts: frozenset[str] = frozenset()  # host names of that origin, as in a URL
    loopback: frozenset[tuple[IPAddress, int]] = frozenset()  # its (address, port) pairs

    @classmethod
    def for_base_url(cls, base_url: str) -> AddressPolicy:
        """The policy for a bot whose RunComfy API lives at ``base_url``."""
        url = httpx.URL(base_url)
        host = url.host.lower()
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 443)
        if host == "localhost" or host.endswith(".localhost"):
            ips: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
        else:
            try:
                ips = {ipaddress.ip_address(host)}
            except ValueError:
                return cls()
            if not all(ip.is_loopback for ip in ips):
                return cls()
        return cls(
            loopback_hosts=frozenset({host, *(str(ip) for ip in ips)}),
            loopback=frozenset((ip, port) for ip in ips),
        )

    def allows(self, ip: IPAddress, port: int) -> bool:
        """Whether a connection to ``ip``:``port`` may be opened."""
        return (ip, port) in self.loopback or is_public(ip)

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a URL by its form (before any address is known). Raises UnsafeLinkError."""
        where = f"{url.scheme}://{url.host}:{url.port or _DEFAULT_PORTS.get(url.scheme, '?')}"
        if url.userinfo:
            raise UnsafeLinkError(_REFUSED, detail=f"refused {where}: credentials in the URL")
        if url.scheme == "https":
            return
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        local = url.host.lower() in self.loopback_hosts and any(
            p == port for _ip, p in self.loopback
        )
        if url.scheme == "http" and local:
            return
        raise UnsafeLinkError(_REFUSED, detail=f"refused {where}: not https")


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, without a lookup for an address literal."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedBackend(httpcore.AnyIOBackend):
    """Connects only to checked addresses: resolves the host itself, then dials the IP."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse unless every address of ``host`` is allowed; connect to the first that answers."""
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        refused = []
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                refused.append(address)
                continue
            if not self._policy.allows(ip, port):
                refused.append(address)
        if refused or not addresses:
            # One bad address is enough: DNS may hand out the others another time.
            raise UnsafeLinkError(
                _REFUSED, detail=f"refused {host}:{port}: resolves to {', '.join(refused) or '-'}"
            )
        last: Exception | None = None
        for address in addresses:
            try:
                return await super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never used for downloads."""
        raise UnsafeLinkError(_REFUSED, detail="refused a unix socket")


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the URL checked on every request (redirects are requests too)."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._policy = policy
        # httpx 0.28 has no option for httpcore's network backend: use a pool of our own.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy, resolver),
        )
        make_lean(self._pool)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check the URL, drop anything that could carry a secret, then send."""
        self._policy.check_url(request.url)
        for name in ("authorization", "proxy-authorization", "cookie"):
            request.headers.pop(name, None)
        return await super().handle_async_request(request)


def _no_cookies() -> CookieJar:
    """A jar that keeps nothing: a cookie set by one host is never sent on."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Downloader:
    """Its own ``httpx.AsyncClient`` for result images: no token, checked addresses, a deadline.

    ``deadline`` bounds a whole download (every attempt, redirect and byte together), so a server
    that sends one byte at a time cannot hold a job; ``timeout`` bounds each read and connect.
    """

    def __init__(
        self,
        *,
        runcomfy_base_url: str,
        timeout: float = 30.0,
        deadline: float = 120.0,
        attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        resolver: Resolver = resolve,
    ) -> None:
        self.policy = AddressPolicy.for_base_url(runcomfy_base_url)
        self.deadline = deadline
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self.http = httpx.AsyncClient(
            transport=_GuardedTransport(self.policy, resolver, limits),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            cookies=_no_cookies(),
            trust_env=False,  # a proxy would resolve names itself, past the address check
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch one image. Raises PermanentError (UnsafeLinkError if refused unfetched)."""
        try:
            data = await self._download(url, max_bytes)
        except UnsafeLinkError:
            metrics.DOWNLOADS.labels("refused").inc()
            raise
        except PermanentError as exc:
            metrics.DOWNLOADS.labels("timeout" if exc.template == _TOO_SLOW else "failed").inc()
            raise
        metrics.DOWNLOADS.labels("ok").inc()
        return data

    async def _download(self, url: str, max_bytes: int) -> bytes:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise UnsafeLinkError(_REFUSED, detail="refused a malformed URL") from None
        self.policy.check_url(parsed)
        try:
            async with asyncio.timeout(self.deadline):
                return await self._fetch(parsed, max_bytes)
        except TimeoutError:
            raise PermanentError(
                _TOO_SLOW,
                detail=f"download from {parsed.host} exceeded {self.deadline:g} s",
                seconds=f"{self.deadline:g}",
            ) from None

    async def _fetch(self, url: httpx.URL, max_bytes: int) -> bytes:
        reason = "?"
        counted = ""  # the same, as a label on the metrics page
        # Images are the product and may expire: try a little harder than for a status poll.
        for attempt in range(self.attempts):
            if attempt:
                metrics.retried("download", counted)
                await asyncio.sleep(self._delay(attempt))
            try:
                return await self._get(url, max_bytes)
            except httpx.TooManyRedirects:
                raise PermanentError(_FAILED, reason="too many redirects") from None
            except (httpx.HTTPError, TransientError) as exc:
                if isinstance(exc, TransientError):
                    reason, counted = str(exc.params["reason"]), "http_error"
                else:
                    reason, counted = type(exc).__name__, metrics.failure(exc)
                log.debug("download from %s failed (attempt %d): %s", url.host, attempt + 1, reason)
        raise PermanentError(_FAILED, reason=reason)

    async def _get(self, url: httpx.URL, max_bytes: int) -> bytes:
        async with self.http.stream("GET", url) as response:
            if response.status_code in (404, 403, 410):
                raise PermanentError(
                    "the image link has expired (HTTP {status})", status=response.status_code
                )
            if response.status_code >= 400:
                raise TransientError(_FAILED, reason=f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise PermanentError("the image is too large to send")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise PermanentError("the image is too large to send")
                chunks.append(chunk)
            return b"".join(chunks)

    def _delay(self, attempt: int) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
