"""A stand-in for an internal service (a metadata endpoint, an admin panel) on 127.0.0.2.

The bot must never connect to it; it counts every connection, even one that only tries TLS.
"""

from __future__ import annotations

import asyncio

from tests.fakes.runcomfy_api import _bomb_png


class InternalService:
    """A plain TCP server on 127.0.0.2 that counts every connection (even a TLS attempt)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> InternalService:
        self._server = await asyncio.start_server(self._serve, "127.0.0.2", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        # Answers like an internal service that hands out a valid image: what must not be posted.
        body = _bomb_png(2, 2)
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1.0)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.2:{self.port}/latest/meta-data/iam/security-credentials"
