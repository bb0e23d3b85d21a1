"""What the bot's three aiohttp clients share: RunComfy (runcomfy.py), result downloads
(downloads.py) and the Bot API (tghttp.py)."""

from __future__ import annotations

import functools
import ssl

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
