"""The RunComfy client on aiohttp: what a submit's failure means for the money, what a poll
retries, what is read of an answer, where the token may go. Real HTTP against the fake RunComfy
(or a loopback socket that never accepts), as the bot itself talks to it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import REGISTRY

from bot.errors import PermanentError, SubmitUnknownError, TransientError
from bot.runcomfy import MAX_ANSWER_BYTES, RemoteStatus, RunComfyClient
from tests.conftest import RC_TOKEN
from tests.fakes.runcomfy_api import HUGE_BYTES, FakeRunComfy, JobScript

PAYLOAD = {"text": "Generate 2 images of a fox.", "sequential_image_generation_options": 2}
NOT_SENT = "Could not reach RunComfy, so nothing was submitted or charged"


@pytest.fixture
async def client(runcomfy: FakeRunComfy) -> AsyncIterator[RunComfyClient]:
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=0.5, backoff=0.01)
    yield client
    await client.aclose()


def counted(endpoint: str, outcome: str) -> float:
    labels = {"endpoint": endpoint, "outcome": outcome}
    return REGISTRY.get_sample_value("seqbot_runcomfy_requests_total", labels) or 0.0


def assert_no_secret(exc: BaseException) -> None:
    """Our own message, nothing of aiohttp's (its errors carry URLs and request headers)."""
    assert RC_TOKEN not in f"{exc!s} {exc!r} {vars(exc)!r}"
    assert exc.__cause__ is None and exc.__suppress_context__


@pytest.fixture
def unaccepting() -> Iterator[str]:
    """A loopback port whose accept queue is full: a SYN to it gets no answer (connect timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # backlog 0 holds one; the rest only make sure it is full
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the handshake goes on by itself
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for filler in fillers:
        filler.close()
    server.close()


async def test_a_refused_submit_was_never_sent(
    runcomfy: FakeRunComfy, client: RunComfyClient
) -> None:
    before = counted("submit", "network")
    await runcomfy.down()
    with pytest.raises(PermanentError) as caught:
        await client.submit(PAYLOAD)
    assert "ClientConnectorError" in str(caught.value)
    assert caught.value.user_message.startswith(NOT_SENT)
    assert_no_secret(caught.value)
    await runcomfy.up()
    assert runcomfy.count("submit") == 0
    assert counted("submit", "network") == before + 1


async def test_a_submit_that_could_not_connect_in_time_was_never_sent(unaccepting: str) -> None:
    client = RunComfyClient(base_url=unaccepting, token=RC_TOKEN, timeout=0.3)
    before = counted("submit", "timeout")
    try:
        with pytest.raises(PermanentError) as caught:
            await client.submit(PAYLOAD)
    finally:
        await client.aclose()
    assert "ConnectionTimeoutError" in str(caught.value)
    assert caught.value.user_message.startswith(NOT_SENT)
    assert counted("submit", "timeout") == before + 1


async def test_a_submit_whose_host_name_did_not_resolve_was_never_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop's resolver fails as a DNS failure would, without asking any DNS server."""
    looked_up: list[str] = []

    async def no_such_host(host: str, *args: object, **kwargs: object) -> list[object]:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
    client = RunComfyClient(base_url="https://runcomfy.invalid", token=RC_TOKEN, timeout=0.3)
    try:
        with pytest.raises(PermanentError) as caught:
            await client.submit(PAYLOAD)
    finally:
        await client.aclose()
    assert looked_up == ["runcomfy.invalid"]
    assert "ClientConnectorDNSError" in str(caught.value)
    assert caught.value.user_message.startswith(NOT_SENT)
    assert_no_secret(caught.value)


async def test_a_submit_with_no_free_connection_in_time_was_never_sent(
    runcomfy: FakeRunComfy,
) -> None:
    """The only connection is busy with an answer that keeps coming (so it never times out)."""
    runcomfy.drip_interval = 0.05
    runcomfy.script_next(JobScript(queued_polls=0, running_polls=0, bad_images={0: "drip"}))
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=0.4, connections=1)
    rid = (await client.submit(PAYLOAD)).request_id
    # What the bot never does with this client (images go through bot.downloads), but it is the
    # one answer of the fake that keeps a connection busy without going quiet.
    busy = asyncio.create_task(client._send("GET", f"/images/{rid}/0.jpeg"))
    try:
        await runcomfy.wait_for(lambda: runcomfy.in_flight("image"))
        with pytest.raises(PermanentError) as caught:
            await client.submit(PAYLOAD)
        assert "ConnectionTimeoutError" in str(caught.value)
        assert caught.value.user_message.startswith(NOT_SENT)
        assert not busy.done()  # the connection was still taken all along
    finally:
        busy.cancel()
        await client.aclose()
    assert runcomfy.count("submit") == 1


@pytest.mark.parametrize(
    ("fault", "error", "outcome"),
    [
        ("timeout", "SocketTimeoutError", "timeout"),
        ("disconnect", "ServerDisconnectedError", "network"),
        ("reset", "ClientOSError", "network"),
        ("truncated", "ClientPayloadError", "network"),
    ],
)
async def test_a_submit_that_may_have_been_taken_is_unknown_and_never_resent(
    runcomfy: FakeRunComfy, client: RunComfyClient, fault: str, error: str, outcome: str
) -> None:
    runcomfy.timeout_delay = 1.0  # longer than the client's 0.5 s
    runcomfy.fail_next("submit", fault, late=True)  # the job is made (billed), then the fault
    before = counted("submit", outcome)
    with pytest.raises(SubmitUnknownError) as caught:
        await client.submit(PAYLOAD)
    assert str(caught.value) == f"submit outcome unknown: {error}"
    assert "unclear whether the job started" in caught.value.user_message
    assert_no_secret(caught.value)
    assert counted("submit", outcome) == before + 1
    await runcomfy.wait_for(lambda: runcomfy.count("submit") == 1)
    await asyncio.sleep(0.2)
    assert runcomfy.count("submit") == 1 and len(runcomfy.jobs) == 1


async def test_a_submit_answer_over_the_cap_is_not_read_and_the_outcome_is_unknown(
    runcomfy: FakeRunComfy, client: RunComfyClient
) -> None:
    """A 200 whose body (gzip: a few KB announced and sent, 2 MB unpacked) is over the cap."""
    assert HUGE_BYTES > MAX_ANSWER_BYTES
    runcomfy.fail_next("submit", "huge", late=True)
    with pytest.raises(SubmitUnknownError) as caught:
        await client.submit(PAYLOAD)
    assert f"body over {MAX_ANSWER_BYTES} bytes" in str(caught.value)
    assert runcomfy.count("submit") == 1 and len(runcomfy.jobs) == 1


async def test_a_poll_answer_over_the_cap_is_transient_and_retried(
    runcomfy: FakeRunComfy, client: RunComfyClient
) -> None:
    rid = (await client.submit(PAYLOAD)).request_id
    runcomfy.fail_next("status", "huge")
    assert (await client.status(rid)).status in (RemoteStatus.QUEUED, RemoteStatus.RUNNING)
    assert runcomfy.count("status") == 2
    runcomfy.fail_next("result", "huge", times=client.attempts)
    with pytest.raises(TransientError) as caught:
        await client.result(rid)
    assert f"body over {MAX_ANSWER_BYTES} bytes" in str(caught.value)


async def test_redirects_are_not_followed_so_the_token_stays_with_the_api(
    runcomfy: FakeRunComfy, client: RunComfyClient
) -> None:
    """The fake redirects to itself as http://localhost:PORT: another origin. A poll so answered
    is retried where it was sent; a redirected submit may have been handled (a 303 says so)."""
    rid = (await client.submit(PAYLOAD)).request_id
    runcomfy.fail_next("status", "redirect")
    await client.status(rid)
    runcomfy.fail_next("submit", "redirect", late=True)
    with pytest.raises(SubmitUnknownError) as caught:
        await client.submit(PAYLOAD)
    assert "HTTP 307: a redirect, not followed" in str(caught.value)
    hosts = {call.host for call in runcomfy.calls}
    assert hosts == {runcomfy.base_url.removeprefix("http://")}
    assert all(call.authorized for call in runcomfy.calls)
    assert [c.status for c in runcomfy.calls if c.endpoint == "status"] == [307, 200]
    assert runcomfy.count("submit") == 2  # the redirected one was not sent again


async def test_polls_and_cancels_retry_transport_failures(
    runcomfy: FakeRunComfy, client: RunComfyClient
) -> None:
    runcomfy.timeout_delay = 1.0
    runcomfy.script_next(JobScript(queued_polls=100))
    rid = (await client.submit(PAYLOAD)).request_id
    for fault in ("reset", "truncated", "disconnect"):
        runcomfy.fail_next("status", fault)
    assert (await client.status(rid)).status == RemoteStatus.QUEUED
    assert [c.fault for c in runcomfy.calls if c.endpoint == "status"] == [
        "reset", "truncated", "disconnect", None
    ]  # fmt: skip
    runcomfy.fail_next("result", "timeout")
    assert (await client.result(rid)).status == RemoteStatus.QUEUED
    runcomfy.fail_next("cancel", "reset")
    assert await client.cancel(rid) is True
    assert runcomfy.count("cancel") == 2


@pytest.mark.parametrize("fault", ["disconnect", "reset"])
async def test_a_dropped_poll_is_retried_only_by_the_client_within_its_budget(
    runcomfy: FakeRunComfy, fault: str
) -> None:
    """aiohttp would re-send a GET at once after a dropped connection (no slot, no backoff)."""
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=0.5, attempts=1)
    try:
        rid = (await client.submit(PAYLOAD)).request_id
        runcomfy.fail_next("status", fault)
        with pytest.raises(TransientError):
            await client.status(rid)
    finally:
        await client.aclose()
    assert runcomfy.count("status") == 1


async def test_closing_is_harmless_twice_or_before_any_request(runcomfy: FakeRunComfy) -> None:
    unused = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN)
    await unused.aclose()
    await unused.aclose()
    used = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN)
    await used.submit(PAYLOAD)
    await used.aclose()
    await used.aclose()
    with pytest.raises(RuntimeError):  # as httpx's closed client: no new session behind our back
        await used.submit(PAYLOAD)


async def test_proxies_from_the_environment_are_not_used(
    runcomfy: FakeRunComfy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would see the token: the API is reached directly, whatever the environment says."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=0.5)
    try:
        rid = (await client.submit(PAYLOAD)).request_id
        await client.status(rid)
    finally:
        await client.aclose()
    assert runcomfy.count("submit") == 1 and runcomfy.count("status") == 1
