"""The download client's address policy and deadline, without the bot around it.

Addresses other than loopback appear only as data: nothing here connects anywhere but 127/8.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator

import pytest
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
