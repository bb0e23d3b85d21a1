"""httpcore's connection pool with its bookkeeping made linear: used by every HTTP client here.

httpcore 1.0 looks over its whole pool whenever a request starts or ends
(``_assign_requests_to_connections``), and two parts of that look grow with the pool:

- for each idle connection it builds a list over *every* connection only to take its length
  (``len([c.is_idle() for c in connections])``, which is the pool's size): quadratic;
- for each idle connection it asks whether the server closed it (``has_expired``), which on
  anyio's streams builds a dict of socket attributes with a ``getpeername()`` system call every
  time, before the ``poll()`` that answers the question.

With the bot's pools (Telegram, RunComfy, downloads: up to 64 connections each) that was about a
tenth of the bot's CPU under steady load (docs/PERFORMANCE.md). :class:`LeanPool` does the same
work once per connection: the same connections are closed, reused or opened, and an idle
connection is still checked with a real ``poll()`` of its socket before it is reused.
"""

from __future__ import annotations

import select
import ssl
import typing
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

# What LeanPool relies on in httpcore's pool; without it, pools are left as httpcore made them.
_POOL_ATTRIBUTES = (
    "_connections",
    "_requests",
    "_max_connections",
    "_max_keepalive_connections",
    "_network_backend",
)


def _readable(sock: Any) -> bool:
    """httpcore's ``is_socket_readable``: readable, or closed, means the server is done with it."""
    if sock is None:
        return True
    fd = sock.fileno()
    if fd == -1:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _LeanStream(AsyncNetworkStream):
    """A network stream whose "is the server gone?" check polls the socket directly."""

    def __init__(self, inner: AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """As the wrapped stream."""
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """As the wrapped stream."""
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        """As the wrapped stream."""
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncNetworkStream:
        """As the wrapped stream; the TLS stream is lean too."""
        return _LeanStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        """As the wrapped stream, but ``is_readable`` without building every socket attribute."""
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class _LeanBackend(AsyncNetworkBackend):
    """Wraps a network backend so that its streams are :class:`_LeanStream`."""

    def __init__(self, inner: AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        """As the wrapped backend."""
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _LeanStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        """As the wrapped backend."""
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _LeanStream(stream)

    async def sleep(self, seconds: float) -> None:
        """As the wrapped backend."""
        await self._inner.sleep(seconds)


class LeanPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, its per-request bookkeeping linear in the number of connections."""

    def _assign_requests_to_connections(self) -> list[Any]:
        # httpcore 1.0.x's method, step for step. Its idle rule counts the pool with a list of
        # every connection built for each idle one (``len([c.is_idle() for c in connections])``):
        # that count is ``len(self._connections)``, the same number without the quadratic walk.
        closing: list[Any] = []
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(self._connections) > self._max_keepalive_connections
            ):
                self._connections.remove(connection)
                closing.append(connection)

        for pool_request in [r for r in self._requests if r.is_queued()]:
            origin = pool_request.request.url.origin
            available = next(
                (c for c in self._connections if c.can_handle_request(origin) and c.is_available()),
                None,
            )
            if available is not None:
                pool_request.assign_to_connection(available)
            elif len(self._connections) < self._max_connections:
                connection = self.create_connection(origin)
                self._connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle = next((c for c in self._connections if c.is_idle()), None)
                if idle is not None:
                    self._connections.remove(idle)
                    closing.append(idle)
                    connection = self.create_connection(origin)
                    self._connections.append(connection)
                    pool_request.assign_to_connection(connection)
        return closing


def make_lean(pool: object) -> bool:
    """Turn an ``httpcore.AsyncConnectionPool`` (exactly that class) into a :class:`LeanPool`,
    keeping every setting; anything else (a proxy, another httpcore) is left alone. True if done."""
    if type(pool) is not httpcore.AsyncConnectionPool:
        return False
    if not all(hasattr(pool, name) for name in _POOL_ATTRIBUTES):
        return False
    pool.__class__ = LeanPool
    backend = typing.cast(Any, pool)._network_backend
    if not isinstance(backend, _LeanBackend):
        typing.cast(Any, pool)._network_backend = _LeanBackend(backend)
    return True


def lean_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` with the pool of its own transport made lean (mounted proxies stay as they are)."""
    transport = getattr(client, "_transport", None)
    if isinstance(transport, httpx.AsyncHTTPTransport):
        make_lean(getattr(transport, "_pool", None))
    return client
