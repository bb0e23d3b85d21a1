"""The download client's address policy and deadline, without the bot around it.

Addresses other than loopback appear only as data: nothing here connects anywhere but 127/8.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from bot.downloads import AddressPolicy, Downloader, UnsafeLinkError, is_public, resolve
from bot.errors import PermanentError
from bot.runcomfy import RunComfyClient
from tests.conftest import RC_TOKEN
from tests.fakes.internal import InternalService
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript


@pytest.fixture
async def internal() -> AsyncIterator[InternalService]:
    service = await InternalService().start()
    yield service
    await service.stop()


# ---- the address policy, on literal data --------------------------------------------------------
# The non-loopback addresses in this file are data only: is_public() judges them, or an injected
# resolver hands them to the downloader, which refuses before opening any connection. Nothing here
# connects anywhere but loopback.


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.100.100.200", False),  # shared address space (a cloud's metadata service)
        ("169.254.169.254", False),  # metadata
        ("fd00:ec2::254", False),  # metadata over IPv6
        ("fe80::1", False),
        ("fec0::1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("255.255.255.255", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d822", True),  # NAT64 of 93.184.216.34
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_only_runcomfy_s_own_loopback_origin_is_exempt() -> None:
    policy = AddressPolicy.for_base_url("http://127.0.0.1:8123")
    loopback = ipaddress.ip_address("127.0.0.1")
    assert policy.allows(loopback, 8123)
    assert not policy.allows(loopback, 8124)
    assert not policy.allows(ipaddress.ip_address("127.0.0.2"), 8123)
    policy.check_url(URL("http://127.0.0.1:8123/images/a/0.jpeg"))
    policy.check_url(URL("https://cdn.example.com/a.jpeg"))
    for refused in (
        "http://127.0.0.1:8124/a.jpeg",
        "http://127.0.0.2:8123/a.jpeg",
        "http://cdn.example.com/a.jpeg",
        "ftp://cdn.example.com/a.jpeg",
        "file:///etc/passwd",
        "https://user:pw@cdn.example.com/a.jpeg",
    ):
        with pytest.raises(UnsafeLinkError):
            policy.check_url(URL(refused))
    # A public RunComfy exempts nothing; localhost exempts both of its addresses on its port.
    assert AddressPolicy.for_base_url("https://model-api.runcomfy.net") == AddressPolicy()
    local = AddressPolicy.for_base_url("http://localhost:9000")
    assert local.allows(ipaddress.ip_address("::1"), 9000)
    assert not local.allows(ipaddress.ip_address("::1"), 9001)


@pytest.mark.parametrize(
    "answer",
    [["10.1.2.3"], ["169.254.169.254"], ["fd00:ec2::254"], ["93.184.216.34", "127.0.0.2"], []],
)
async def test_names_are_checked_after_resolution(answer: list[str]) -> None:
    """A public-looking name that resolves to a private address is refused before connecting."""
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answer

    downloader = Downloader(runcomfy_base_url="https://model-api.runcomfy.net", resolver=resolver)
    try:
        with pytest.raises(UnsafeLinkError):
            await downloader.download("https://cdn.example.com/a.jpeg", max_bytes=1000)
    finally:
        await downloader.aclose()
    assert asked == [("cdn.example.com", 443)]  # resolved once, refused, never retried


async def test_localhost_by_name_resolves_to_a_refused_address(internal: InternalService) -> None:
    assert "127.0.0.1" in await resolve("localhost", 80)
    downloader = Downloader(runcomfy_base_url="http://127.0.0.1:1")
    try:
        with pytest.raises(UnsafeLinkError):
            await downloader.download(f"https://localhost:{internal.port}/", max_bytes=1000)
        with pytest.raises(UnsafeLinkError):
            await downloader.download(internal.url("https"), max_bytes=1000)
    finally:
        await downloader.aclose()
    assert internal.connections == 0


async def test_the_download_deadline_covers_the_whole_transfer(runcomfy: FakeRunComfy) -> None:
    runcomfy.drip_interval = 0.05
    runcomfy.script_next(JobScript(queued_polls=0, running_polls=0, bad_images={0: "drip"}))
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=2)
    downloader = Downloader(runcomfy_base_url=runcomfy.base_url, timeout=1, deadline=0.3)
    try:
        submission = await client.submit({"text": "Generate 1 image of a fox.",
                                          "sequential_image_generation_options": 1})  # fmt: skip
        (url,) = (await client.result(submission.request_id)).images
        started = time.monotonic()
        with pytest.raises(PermanentError, match=r"0\.3 s"):
            await downloader.download(url, max_bytes=10_000_000)
        assert time.monotonic() - started < 1.0
    finally:
        await client.aclose()
        await downloader.aclose()


# ---- redirects, sizes and the session, against a small server of the test's own -------------


class ImageServer:
    """Loopback aiohttp server: /hop/N redirects N more times, /chunked streams without a length."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> ImageServer:
        app = web.Application()
        app.router.add_get("/hop/{n:\\d+}", self._hop)
        app.router.add_get("/chunked/{n:\\d+}", self._chunked)
        app.router.add_get("/to", self._to)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.hits.append(request.path_qs)
        self.headers.append(dict(request.headers))

    async def _hop(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=b"\xff\xd8image", content_type="image/jpeg")
        # Relative, with a cookie: the next hop must come back without it.
        return web.Response(
            status=302, headers={"Location": f"{n - 1}", "Set-Cookie": "session=s3cret; Path=/"}
        )

    async def _to(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        return web.Response(status=307, headers={"Location": request.query["url"]})

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.match_info["n"])):
            await response.write(b"x" * 500)
        await response.write_eof()
        return response


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    server = await ImageServer().start()
    yield server
    await server.stop()


def _downloader(server: ImageServer, **kwargs: Any) -> Downloader:
    return Downloader(runcomfy_base_url=server.base, backoff=0.01, **kwargs)


async def test_redirects_are_followed_by_hand_up_to_the_limit(images: ImageServer) -> None:
    downloader = _downloader(images)
    try:
        assert await downloader.download(f"{images.base}/hop/5", max_bytes=1000) == b"\xff\xd8image"
        assert images.hits == [f"/hop/{n}" for n in range(5, -1, -1)]
        assert not any("Cookie" in h or "Authorization" in h for h in images.headers)
        images.hits.clear()
        with pytest.raises(PermanentError, match="too many redirects"):
            await downloader.download(f"{images.base}/hop/6", max_bytes=1000)
        assert len(images.hits) == 6  # the first request and five redirects; not retried
    finally:
        await downloader.aclose()


async def test_a_body_over_the_cap_without_a_length_is_cut_off(images: ImageServer) -> None:
    downloader = _downloader(images)
    try:
        assert len(await downloader.download(f"{images.base}/chunked/2", max_bytes=1000)) == 1000
        with pytest.raises(PermanentError, match="too large"):
            await downloader.download(f"{images.base}/chunked/200", max_bytes=1000)
        assert images.hits == ["/chunked/2", "/chunked/200"]  # too large is not retried
    finally:
        await downloader.aclose()


async def test_a_redirect_to_a_name_is_checked_after_resolution(images: ImageServer) -> None:
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["169.254.169.254"]

    downloader = _downloader(images, resolver=resolver)
    try:
        with pytest.raises(UnsafeLinkError):
            await downloader.download(
                f"{images.base}/to?url=https://cdn.example.com/a.jpeg", max_bytes=1000
            )
    finally:
        await downloader.aclose()
    assert asked == [("cdn.example.com", 443)]
    assert len(images.hits) == 1


async def test_a_redirect_to_credentials_on_the_same_origin_is_refused(
    images: ImageServer,
) -> None:
    """aiohttp would turn user:secret@ into an Authorization header: the hop is refused first."""
    downloader = _downloader(images)
    with_credentials = images.base.replace("://", "://user:secret@") + "/hop/0"
    try:
        with pytest.raises(UnsafeLinkError):
            await downloader.download(f"{images.base}/to?url={with_credentials}", max_bytes=1000)
    finally:
        await downloader.aclose()
    assert images.hits == [f"/to?url={with_credentials}"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1:{port}/a.jpeg",  # legacy IPv4 forms of 127.0.0.1 / 127.0.0.2
        "https://2130706434:{port}/a.jpeg",
        "https://[::ffff:127.0.0.2]:{port}/a.jpeg",
        "https://a b/a.jpeg",
        "https:///a.jpeg",
        "https://x:99999/a.jpeg",
    ],
)
async def test_odd_hosts_are_refused_unfetched(internal: InternalService, url: str) -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return await resolve(host, port)

    downloader = Downloader(runcomfy_base_url="http://127.0.0.1:1", backoff=0.01, resolver=resolver)
    try:
        with pytest.raises(UnsafeLinkError):
            await downloader.download(url.format(port=internal.port), max_bytes=1000)
    finally:
        await downloader.aclose()
    assert internal.connections == 0
    assert len(asked) <= 1  # refused at once, never retried


async def test_the_session_is_made_on_first_use_and_closing_is_harmless() -> None:
    never_used = Downloader(runcomfy_base_url="http://127.0.0.1:1")
    await never_used.aclose()
    await never_used.aclose()
    with pytest.raises(RuntimeError):
        await never_used.download("http://127.0.0.1:1/a.jpeg", max_bytes=10)


async def test_failed_attempts_are_named_as_users_have_always_seen_them() -> None:
    """Connection refused and a resolver that hangs: retried, then named as before aiohttp."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    refused = Downloader(runcomfy_base_url=f"http://127.0.0.1:{port}", attempts=2, backoff=0.01)
    asked: list[str] = []

    async def hanging(host: str, port: int) -> list[str]:
        asked.append(host)
        await asyncio.sleep(10)
        return []

    slow = Downloader(
        runcomfy_base_url="http://127.0.0.1:1",
        timeout=0.1,
        attempts=2,
        backoff=0.01,
        resolver=hanging,
    )
    try:
        with pytest.raises(PermanentError, match=r"could not be downloaded \(ConnectError\)"):
            await refused.download(f"http://127.0.0.1:{port}/a.jpeg", max_bytes=10)
        with pytest.raises(PermanentError, match=r"could not be downloaded \(ConnectTimeout\)"):
            await slow.download("https://cdn.example.com/a.jpeg", max_bytes=10)
        assert asked == ["cdn.example.com"] * 2
    finally:
        await refused.aclose()
        await slow.aclose()
