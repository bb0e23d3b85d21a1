"""What the bot's three aiohttp clients share: RunComfy (runcomfy.py), result downloads
(downloads.py) and the Bot API (tghttp.py)."""

from __future__ import annotations

import functools
import ssl

import aiohttp

# Seconds an idle kept-alive connection stays open: httpx's keepalive_expiry, which the clients
# had before (aiohttp's own default is 15 s).
KEEPALIVE_SECONDS = 5.0


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every session: made once (loading the CA store costs ~20 ms of CPU).

    The system's CA store, and SSL_CERT_FILE / SSL_CERT_DIR when set (as httpx honoured them;
    without them httpx used certifi's bundle, the system's store here: Debian's ca-certificates
    in the Docker image).
    """
    return ssl.create_default_context()


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The (decompressed) body, or None as soon as it proves longer than ``cap`` bytes: by its
    announced length (then nothing is read), or while reading (a gzip bomb, no length)."""
    length = response.content_length
    if length is not None and length > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
