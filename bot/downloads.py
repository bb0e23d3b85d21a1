"""Downloading result images: only from public addresses, never with a token, within a deadline.

What RunComfy's result lists is not trusted. Each URL, and every redirect it leads to, must be
https and must resolve only to public addresses; the check is made when the connection is opened,
on the addresses actually connected to, so no redirect hop and no DNS answer can slip past it. The
one exception is the RunComfy base URL's own address and port when it is on loopback (local
development and the tests), where http is allowed too.

The client is aiohttp (a fraction of httpx's CPU per request): a resolver of our own refuses a
name with any disallowed address before a socket exists, a socket factory refuses any address
(address literals skip the resolver) just before it is connected to, and redirects are followed
by hand so each hop's URL is checked too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bot import aio, metrics
from bot.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses to connect to; injectable so tests never need real DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_REFUSED = "the image link points to a place the bot does not download from"
_TOO_SLOW = "the image took longer than {seconds} s to download"
_FAILED = "the image could not be downloaded ({reason})"
_TOO_LARGE = "the image is too large to send"
_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_LOCATION = 8192  # characters of a Location header we are willing to parse
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A host as it goes on the wire (IDNA already applied by yarl), or an IPv6 literal.
_HOST = re.compile(r"[a-z0-9._-]{1,253}|[0-9a-f:.]+(%[a-z0-9_.-]+)?")
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
        url = URL(base_url)
        host = (url.raw_host or "").lower()
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

    def check_url(self, url: URL) -> None:
        """Refuse a URL by its form (before any address is known). Raises UnsafeLinkError."""
        host = (url.raw_host or "").lower()
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        where = f"{url.scheme}://{host}:{port or '?'}"
        if not url.is_absolute() or not _HOST.fullmatch(host):
            raise UnsafeLinkError(_REFUSED, detail=f"refused {where}: malformed URL")
        if url.raw_user is not None or url.raw_password is not None:
            raise UnsafeLinkError(_REFUSED, detail=f"refused {where}: credentials in the URL")
        if url.scheme == "https":
            return
        local = host in self.loopback_hosts and any(p == port for _ip, p in self.loopback)
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
        # aiohttp turns an OSError from its resolver into ClientConnectorDNSError: retried.
        raise OSError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_ip(address: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver: the injected ``resolver``, and nothing unless every address is allowed.

    An exception other than OSError raised here reaches the caller of ``session.get`` as it is
    (aiohttp wraps only OSError, as ClientConnectorDNSError), so UnsafeLinkError arrives intact,
    before any socket was made.
    """

    def __init__(self, policy: AddressPolicy, resolver: Resolver, timeout: float) -> None:
        self._policy = policy
        self._resolve = resolver
        self._timeout = timeout

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Refuse unless every address of ``host`` is allowed; else all of them, in order."""
        # A bare TimeoutError from a resolver passes through aiohttp's connector, and the session
        # turns it into ConnectionTimeoutError: retried, counted as a timeout (as before).
        async with asyncio.timeout(self._timeout):
            addresses = await self._resolve(host, port)
        refused = []
        results: list[ResolveResult] = []
        for address in addresses:
            ip = _parse_ip(address)
            if ip is None or not self._policy.allows(ip, port):
                refused.append(address)
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(ip),
                    "port": port,
                    "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if refused or not addresses:
            # One bad address is enough: DNS may hand out the others another time.
            raise UnsafeLinkError(
                _REFUSED, detail=f"refused {host}:{port}: resolves to {', '.join(refused) or '-'}"
            )
        return results

    async def close(self) -> None:
        """Nothing to release."""


def _guarded_socket(policy: AddressPolicy) -> aiohttp.SocketFactoryType:
    """aiohttp's socket factory: the last check, on the very address about to be connected to.

    Address literals in URLs never reach the resolver, so this is where they are refused; for
    names it repeats the resolver's check. Raised before the socket exists: nothing is sent.
    """

    def make(addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, type_, proto, _name, address = addr_info
        ip = _parse_ip(str(address[0]))
        if ip is None or not policy.allows(ip, int(address[1])):
            raise UnsafeLinkError(_REFUSED, detail=f"refused {address[0]}:{address[1]}")
        return socket.socket(family=family, type=type_, proto=proto)

    return make


def _reason(exc: BaseException) -> str:
    """A failed attempt, named as the user has always seen it (httpx's names, before aiohttp)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, TimeoutError):
        return "ReadTimeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "RemoteProtocolError"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "RemoteProtocolError"  # a malformed answer
    if isinstance(exc, OSError):
        return "ReadError"
    return "NetworkError"


class _TooManyRedirects(Exception):
    pass


class Downloader:
    """Its own ``aiohttp.ClientSession`` for result images: no token, checked addresses, a deadline.

    ``deadline`` bounds a whole download (every attempt, redirect and byte together), so a server
    that sends one byte at a time cannot hold a job; ``timeout`` bounds each read and connect.
    The session is made on first use (aiohttp wants a running loop for it).
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
        self._resolver = resolver
        self._connect_timeout = min(timeout, 10.0)
        # connect: waiting for a free connection, resolving and connecting (httpx's pool timeout);
        # sock_read: each read, as httpx's read timeout. The whole download has the deadline.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=self._connect_timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session, made on first use (inside the running loop)."""
        if self._closed:
            raise RuntimeError("the downloader is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=64,
                keepalive_timeout=aio.KEEPALIVE_SECONDS,
                # Every new connection asks the resolver again, as before: no cached answers.
                use_dns_cache=False,
                resolver=_GuardedResolver(self.policy, self._resolver, self._connect_timeout),
                socket_factory=_guarded_socket(self.policy),
                ssl=aio.tls_context(),  # the system's CA store, or SSL_CERT_FILE / SSL_CERT_DIR
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),  # a cookie set by one host is never sent on
                trust_env=False,  # a proxy would resolve names itself, past the address check
                auto_decompress=True,  # as httpx did; aiohttp bounds each inflated chunk
            )
        return self._session

    async def aclose(self) -> None:
        """Close the HTTP session (harmless if there is none, or twice)."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
            parsed = URL(url)
        except (ValueError, TypeError):
            raise UnsafeLinkError(_REFUSED, detail="refused a malformed URL") from None
        self.policy.check_url(parsed)
        session = self.session
        try:
            async with asyncio.timeout(self.deadline):
                return await self._fetch(session, parsed, max_bytes)
        except TimeoutError:
            raise PermanentError(
                _TOO_SLOW,
                detail=f"download from {parsed.raw_host} exceeded {self.deadline:g} s",
                seconds=f"{self.deadline:g}",
            ) from None

    async def _fetch(self, session: aiohttp.ClientSession, url: URL, max_bytes: int) -> bytes:
        reason = "?"
        counted = ""  # the same, as a label on the metrics page
        # Images are the product and may expire: try a little harder than for a status poll.
        for attempt in range(self.attempts):
            if attempt:
                metrics.retried("download", counted)
                await asyncio.sleep(self._delay(attempt))
            try:
                return await self._follow(session, url, max_bytes)
            except _TooManyRedirects:
                raise PermanentError(_FAILED, reason="too many redirects") from None
            except aiohttp.InvalidURL:
                # A host our check passed but aiohttp will not dial (a legacy IPv4 form, 127.1).
                raise UnsafeLinkError(_REFUSED, detail="refused a malformed URL") from None
            except (aiohttp.ClientError, OSError, TransientError) as exc:
                # aiohttp's timeouts are TimeoutError (an OSError); the deadline's own
                # TimeoutError cannot arrive here: asyncio.timeout raises it only at its exit.
                if isinstance(exc, TransientError):
                    reason, counted = str(exc.params["reason"]), "http_error"
                else:
                    reason, counted = _reason(exc), metrics.failure(exc)
                log.debug("download from %s failed (attempt %d): %s", url.host, attempt + 1, reason)
        raise PermanentError(_FAILED, reason=reason)

    async def _follow(self, session: aiohttp.ClientSession, url: URL, max_bytes: int) -> bytes:
        """One attempt: the URL and its redirects, each hop checked before it is requested."""
        for _hop in range(_MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            location = await self._get(session, url, max_bytes)
            if isinstance(location, bytes):
                return location
            url = location
        raise _TooManyRedirects

    async def _get(self, session: aiohttp.ClientSession, url: URL, max_bytes: int) -> bytes | URL:
        """The image at ``url``, or where it redirects to."""
        # Redirects by hand: aiohttp's own would connect before our check_url saw the hop.
        async with session.get(url, allow_redirects=False) as response:
            status = response.status
            if status in _REDIRECTS and "Location" in response.headers:
                location = response.headers["Location"]
                if len(location) > _MAX_LOCATION:
                    raise TransientError(_FAILED, reason="RemoteProtocolError")
                try:
                    return url.join(URL(location))
                except (ValueError, TypeError):
                    raise TransientError(_FAILED, reason="RemoteProtocolError") from None
            if status in (404, 403, 410):
                raise PermanentError("the image link has expired (HTTP {status})", status=status)
            if status >= 400:
                raise TransientError(_FAILED, reason=f"HTTP {status}")
            body = await aio.read_capped(response, max_bytes)
            if body is None:
                raise PermanentError(_TOO_LARGE)
            return body

    def _delay(self, attempt: int) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
