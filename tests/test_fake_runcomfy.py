"""Tests for the fake RunComfy server (tests/fakes/runcomfy_api.py)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.runcomfy_api import SUBMIT_PATH, FakeRunComfy, JobScript

TOKEN = "rc-test-token"
PROMPT = "Generate 3 images of a calm ocean at sunset."


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunComfy]:
    async with FakeRunComfy(token=TOKEN) as server:
        yield server


@pytest.fixture
async def client(fake: FakeRunComfy) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers, timeout=5) as c:
        yield c


async def submit(client: httpx.AsyncClient, **payload: Any) -> str:
    response = await client.post(SUBMIT_PATH, json={"text": PROMPT, **payload})
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


async def status(client: httpx.AsyncClient, rid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/requests/{rid}/status")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_wrong_or_missing_token(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    bad = {"Authorization": "Bearer nope"}
    response = await client.post(SUBMIT_PATH, json={"text": PROMPT}, headers=bad)
    assert response.status_code == 401
    assert response.json() == {
        "error_code": 400004,
        "error_message": "Invalid or expired API token",
    }
    async with httpx.AsyncClient(base_url=fake.base_url) as anonymous:
        assert (await anonymous.get("/v1/requests/x/status")).status_code == 401
    assert fake.jobs == {}
    assert all("Authorization" not in repr(c) and TOKEN not in repr(c) for c in fake.calls)


@pytest.mark.parametrize(
    "payload",
    [
        {"text": PROMPT, "image_size": "16:9"},
        {"text": "Generate 3 images. " + "x" * 600},
        {"text": "Generate 16 images.", "sequential_image_generation_options": 16},
        {"text": "Generate images of the sea."},
        {"text": "Generate 13 images.", "sequential_image_generation_options": 3},
        {"text": "Generate 2 images.", "sequential_image_generation_options": 4},
        {"prompt": PROMPT},
        [PROMPT],
    ],
)
async def test_invalid_submit(
    fake: FakeRunComfy, client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    response = await client.post(SUBMIT_PATH, json=payload)
    assert response.status_code == 422
    assert response.json()["error_code"] == 422001
    assert len(fake.errors) == 1
    assert response.json()["error_message"] in fake.errors[0]
    assert fake.jobs == {}


async def test_non_json_submit(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT_PATH, content=b"{nope")
    assert response.status_code == 422
    assert fake.calls[-1].body == "{nope"
    assert fake.errors


async def test_valid_submit(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    payload = {
        "text": "Four images: a fox in four seasons.",
        "sequential_image_generation_options": 4,
        "image_size": "1440:2560 (9:16)",
        "seed": 7,
        "optimize_prompt_options": "standard",
    }
    response = await client.post(SUBMIT_PATH, json=payload)
    assert response.status_code == 200
    body = response.json()
    rid = body["request_id"]
    base = f"{fake.base_url}/v1/requests/{rid}"
    assert body == {
        "request_id": rid,
        "status_url": f"{base}/status",
        "result_url": f"{base}/result",
        "cancel_url": f"{base}/cancel",
    }
    assert fake.errors == []
    assert fake.jobs[rid].payload == payload
    assert fake.calls[-1].endpoint == "submit" and fake.calls[-1].body == payload
    assert fake.count("submit") == 1


async def test_unknown_key_is_accepted_with_warning(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    await submit(client, sequential_image_generation_option=3)
    assert len(fake.errors) == 1 and fake.errors[0].startswith("warning")


async def test_poll_script_walks_states_and_images_download(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    fake.script_next(JobScript(queued_polls=3, running_polls=2, size=(80, 40)))
    rid = await submit(client, sequential_image_generation_options=2, text="Make 2 images.")
    # A result request on an unfinished job answers its state and is a poll like a status one.
    early = (await client.get(f"/v1/requests/{rid}/result")).json()
    assert early["status"] == "in_queue" and "output" not in early
    seen = [await status(client, rid) for _ in range(5)]
    assert [(s["status"], s.get("queue_position")) for s in seen] == [
        ("in_queue", 2),
        ("in_queue", 1),
        ("in_progress", None),
        ("in_progress", None),
        ("completed", None),
    ]
    result = (await client.get(f"/v1/requests/{rid}/result?include_cost=true")).json()
    assert result["status"] == "succeeded" and result["cost"] == pytest.approx(0.06)
    assert {"created_at", "finished_at"} <= result.keys()
    urls = result["output"]["images"]
    assert len(urls) == 2 and all(u.startswith(fake.base_url) for u in urls)
    blobs = []
    for url in urls:
        response = await client.get(url, headers={"Authorization": ""})
        assert response.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(response.content)) as img:
            assert (img.format, img.size) == ("JPEG", (80, 40))
        blobs.append(response.content)
    assert blobs[0] != blobs[1]
    assert (await client.get(urls[0])).content == blobs[0]
    job = fake.jobs[rid]
    assert (job.polls, job.result_fetches, job.state) == (6, 1, "completed")
    assert job.finished_at is not None


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
async def test_result_polls_walk_a_generating_job_to_its_end(
    fake: FakeRunComfy, client: httpx.AsyncClient, outcome: str
) -> None:
    fake.script_next(JobScript(queued_polls=0, running_polls=2, outcome=outcome, error="Flagged"))
    rid = await submit(client, sequential_image_generation_options=2, text="Make 2 images.")
    url = f"/v1/requests/{rid}/result?include_cost=true"
    seen = [(await client.get(url)).json() for _ in range(3)]
    assert [s["status"] for s in seen] == ["in_progress", "in_progress", outcome]
    assert all("output" not in s and "error" not in s for s in seen[:2])
    if outcome == "succeeded":
        assert len(seen[2]["output"]["images"]) == 2 and "error" not in seen[2]
    else:
        assert seen[2]["error"] == "Flagged" and "output" not in seen[2]
    assert {"created_at", "finished_at"} <= seen[2].keys()
    job = fake.jobs[rid]
    assert (job.polls, job.result_fetches) == (3, 1)
    assert (await client.get(url)).json() == seen[2]  # a finished job: no more polls counted
    assert (job.polls, job.result_fetches) == (3, 2)


async def test_fewer_images_and_single_image_form(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    fake.script_next(JobScript(queued_polls=0, running_polls=0, images=1, single_image_form=True))
    fake.script_next(JobScript(queued_polls=0, running_polls=0, images=2))
    single, fewer = await submit(client), await submit(client)
    out = (await client.get(f"/v1/requests/{single}/result")).json()["output"]
    assert out == {"image": fake.jobs[single].image_urls[0]}
    out = (await client.get(f"/v1/requests/{fewer}/result")).json()["output"]
    assert len(out["images"]) == 2


async def test_failed_outcome(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    fake.default_script = JobScript(queued_polls=0, running_polls=1, outcome="failed", error="x")
    rid = await submit(client)
    assert (await status(client, rid))["status"] == "in_progress"
    assert (await status(client, rid))["status"] == "failed"
    result = (await client.get(f"/v1/requests/{rid}/result")).json()
    assert result["status"] == "failed" and result["error"] == "x" and "output" not in result


async def test_cancel_queued_and_running(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    queued = await submit(client)
    assert (await status(client, queued))["status"] == "in_queue"
    response = await client.post(f"/v1/requests/{queued}/cancel")
    assert response.status_code == 202
    assert response.json() == {"request_id": queued, "status": "cancelled", "outcome": "cancelled"}
    for _ in range(3):
        assert (await status(client, queued))["status"] == "cancelled"
    assert (await client.get(f"/v1/requests/{queued}/result")).json()["status"] == "cancelled"

    running = await submit(client)
    await status(client, running)
    assert (await status(client, running))["status"] == "in_progress"
    response = await client.post(f"/v1/requests/{running}/cancel")
    assert response.status_code == 202 and response.json()["outcome"] == "not_cancellable"
    assert (await status(client, running))["status"] == "completed"
    assert (await client.get("/v1/requests/nope/status")).json()["error_code"] == 404001


async def test_bad_images(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    bad = {0: "404", 1: "not_image", 2: "truncated", 3: "huge"}
    fake.script_next(JobScript(queued_polls=0, running_polls=0, bad_images=bad))
    rid = await submit(client, text="5 images", sequential_image_generation_options=5)
    urls = fake.jobs[rid].image_urls
    assert (await client.get(urls[0])).status_code == 404
    html = await client.get(urls[1])
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    truncated = (await client.get(urls[2])).content
    with pytest.raises(OSError), Image.open(io.BytesIO(truncated)) as img:
        img.load()
    huge = (await client.get(urls[3])).content
    with Image.open(io.BytesIO(huge)) as img:
        assert sum(img.size) > 10000 and len(huge) < 100_000
    with Image.open(io.BytesIO((await client.get(urls[4])).content)) as img:
        assert img.size == (64, 36)
    assert (await client.get(f"{fake.base_url}/images/{rid}/9.jpeg")).status_code == 404


async def test_crafted_results_redirects_drip_and_bomb(fake: FakeRunComfy) -> None:
    fake.drip_interval = 0.05
    fake.script_next(
        JobScript(
            queued_polls=0,
            running_polls=0,
            urls={1: "{base}/elsewhere/{rid}", 2: 42},
            redirects={3: "{base}/images/{rid}/0.jpeg"},
            bad_images={4: "drip", 5: "bomb"},
            cost=float("nan"),
        )
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers, timeout=5) as api:
        rid = await submit(api, text="6 images", sequential_image_generation_options=6)
        body = (await api.get(f"/v1/requests/{rid}/result?include_cost=true")).json()
    own = fake.jobs[rid].image_urls
    listed = body["output"]["images"]
    assert listed[0] == own[0] and listed[1] == f"{fake.base_url}/elsewhere/{rid}"
    assert listed[2] == 42 and math.isnan(body["cost"])
    async with httpx.AsyncClient(timeout=5) as anonymous:  # images need no token
        redirect = await anonymous.get(own[3])
        assert redirect.status_code == 302 and redirect.headers["location"] == own[0]
        assert "fake-session" in redirect.headers["set-cookie"]
    async with httpx.AsyncClient(timeout=5) as anonymous:  # without that cookie
        bomb = (await anonymous.get(own[5])).content
        assert len(bomb) < 100
        with pytest.raises(Image.DecompressionBombError, match="900000000 pixels"):
            Image.open(io.BytesIO(bomb))
        started = asyncio.get_running_loop().time()
        async with anonymous.stream("GET", own[4]) as drip:
            chunks: list[bytes] = []
            async for chunk in drip.aiter_raw():
                chunks.append(chunk)
                if len(chunks) == 3:
                    break
        assert [len(c) for c in chunks] == [1, 1, 1]
        assert asyncio.get_running_loop().time() - started >= 0.09
        await anonymous.get(own[0], headers={"Cookie": "a=b"})
    assert fake.errors == ["image request carried Cookie"]


async def test_a_fault_can_carry_its_own_message(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    fake.fail_next("submit", "422", message="x" * 5000)
    response = await client.post(SUBMIT_PATH, json={"text": PROMPT})
    assert response.status_code == 422
    assert response.json() == {"error_code": 422001, "error_message": "x" * 5000}


async def test_jpeg_bytes_target(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    fake.script_next(JobScript(size=(400, 300), jpeg_bytes=150_000))
    rid = await submit(client)
    data = (await client.get(fake.jobs[rid].image_urls[0])).content
    assert len(data) == 150_000
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.size == (400, 300)


async def test_time_based_script(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    fake.script_next(JobScript(queued_seconds=0.15, running_seconds=0.15))
    rid = await submit(client)
    first = await status(client, rid)
    assert first["status"] == "in_queue" and first["queue_position"] >= 1
    await asyncio.sleep(0.2)  # this script runs on the clock: time passes on purpose
    assert (await status(client, rid))["status"] == "in_progress"
    await asyncio.sleep(0.15)
    assert (await status(client, rid))["status"] == "completed"


async def test_realistic_profile(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    fake.set_profile("realistic", seed=1)
    rid = await submit(client, image_size="3024:1296 (21:9)")
    script = fake.jobs[rid].script
    assert script.queued_seconds is not None and 0 <= script.queued_seconds <= 10
    assert script.running_seconds is not None and 5 <= script.running_seconds <= 30
    assert (await status(client, rid))["status"] in ("in_queue", "in_progress")


@pytest.mark.parametrize(
    ("fault", "code", "check"),
    [
        ("500", 500, lambda r: r.json()["error_code"] == 500001),
        ("502", 502, lambda r: "Bad Gateway" in r.text),
        ("503", 503, lambda r: r.text == "Service Unavailable"),
        ("429", 429, lambda r: r.headers["Retry-After"] == "1"),
        ("error_code_200", 200, lambda r: r.json()["error_code"] == 500001),
        ("401", 401, lambda r: r.json()["error_code"] == 400004),
        ("402", 402, lambda r: r.json()["error_code"] == 400002),
        ("404", 404, lambda r: r.json()["error_code"] == 404001),
    ],
)
async def test_http_faults_do_not_count_as_polls(
    fake: FakeRunComfy, client: httpx.AsyncClient, fault: str, code: int, check: Any
) -> None:
    rid = await submit(client)
    fake.fail_next("status", fault)
    response = await client.get(f"/v1/requests/{rid}/status")
    assert response.status_code == code and check(response)
    assert fake.jobs[rid].polls == 0 and fake.calls[-1].fault == fault
    assert (await status(client, rid))["status"] == "in_queue"


async def test_broken_json_disconnect_and_timeout(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    fake.fail_next("submit", "broken_json")
    response = await client.post(SUBMIT_PATH, json={"text": PROMPT})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    fake.fail_next("result", "disconnect")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get("/v1/requests/x/result")
    assert fake.calls[-1].status == 0 and fake.calls[-1].fault == "disconnect"
    fake.timeout_delay = 0.3
    rid = await submit(client)
    fake.fail_next("status", "timeout")
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"/v1/requests/{rid}/status", timeout=0.1)
    await fake.wait_for(lambda: fake.calls[-1].fault == "timeout", timeout=2)
    assert fake.jobs[rid].polls == 0
    assert fake.jobs == {rid: fake.jobs[rid]}


async def test_fail_next_times_and_retry_after(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    fake.fail_next("submit", "429", times=2, retry_after=7)
    for _ in range(2):
        response = await client.post(SUBMIT_PATH, json={"text": PROMPT})
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    await submit(client)
    assert [c.status for c in fake.calls] == [429, 429, 200]
    with pytest.raises(ValueError):
        fake.fail_next("status", "418")


async def test_fail_ratio(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    fake.script_next(JobScript(queued_polls=5, running_polls=5))
    rid = await submit(client)
    fake.fail_ratio("status", "503", 1 / 3, seed=3)
    codes = [(await client.get(f"/v1/requests/{rid}/status")).status_code for _ in range(30)]
    failed = codes.count(503)
    assert 5 <= failed <= 15 and codes.count(200) == 30 - failed
    assert fake.jobs[rid].polls == 30 - failed
    assert fake.count("status", rid) == 30


async def test_down_refuses_connections_and_up_restores_same_port(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    port = fake.port
    await fake.down()
    with pytest.raises(httpx.ConnectError):
        await client.get(f"/v1/requests/{rid}/status")
    await fake.up()
    assert fake.port == port
    assert (await status(client, rid))["status"] == "in_queue"


async def test_down_without_refusing_disconnects_api_only(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    await fake.down(refuse=False)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(f"/v1/requests/{rid}/status")
    assert (await client.get(fake.jobs[rid].image_urls[0])).status_code == 200
    await fake.up()
    assert (await status(client, rid))["status"] == "in_queue"


async def test_wait_for(fake: FakeRunComfy, client: httpx.AsyncClient) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)  # on purpose: the call comes after wait_for has begun waiting
        await client.get("/nowhere")

    task = asyncio.create_task(later())
    call = await fake.wait_for(lambda: next((c for c in fake.calls if c.endpoint == "other"), None))
    assert call.path == "/nowhere" and call.status == 404
    await task
    with pytest.raises(AssertionError, match="/nowhere"):
        await fake.wait_for(lambda: fake.count("submit"), timeout=0.05)


def test_standalone_process() -> None:
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "tests.fakes.runcomfy_api", "--token", "T", "--port", "0"]
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), line
        base_url = line.split()[1]
        headers = {"Authorization": "Bearer T"}
        response = httpx.get(f"{base_url}/v1/requests/nope/status", headers=headers, timeout=5)
        assert response.status_code == 404 and response.json()["error_code"] == 404001
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("fault", ["502", "504"])
async def test_a_late_gateway_fault_makes_the_job_then_loses_the_answer(
    fake: FakeRunComfy, client: httpx.AsyncClient, fault: str
) -> None:
    fake.fail_next("submit", fault, late=True)
    response = await client.post(SUBMIT_PATH, json={"text": PROMPT})
    assert response.status_code == int(fault) and "Gateway" in response.text
    assert len(fake.jobs) == 1  # made (and billed) all the same
    fake.fail_next("submit", fault)  # not late: refused before anything was made
    assert (await client.post(SUBMIT_PATH, json={"text": PROMPT})).status_code == int(fault)
    assert len(fake.jobs) == 1


async def test_a_held_request_is_in_flight_until_released(
    fake: FakeRunComfy, client: httpx.AsyncClient
) -> None:
    fake.hold("submit")
    posting = asyncio.ensure_future(client.post(SUBMIT_PATH, json={"text": PROMPT}))
    await fake.wait_for(lambda: fake.in_flight("submit") == 1, timeout=2)
    await asyncio.sleep(0.05)
    assert not posting.done() and fake.jobs == {} and fake.in_flight("status") == 0
    fake.release("submit")
    assert (await posting).status_code == 200
    assert fake.in_flight("submit") == 0 and len(fake.jobs) == 1
    await submit(client)  # released for good
    fake.hold("submit")  # a fake that stops lets held requests go on, as a slow server would
    posting = asyncio.ensure_future(client.post(SUBMIT_PATH, json={"text": PROMPT}))
    await fake.wait_for(lambda: fake.in_flight("submit") == 1, timeout=2)
    await fake.stop()
    assert (await posting).status_code == 200
