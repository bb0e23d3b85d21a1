"""The /metrics page: off by default, on loopback when asked, counting what a job does.

The metrics are process-wide (prometheus-client's default registry) and other tests' bots run in
the same process, so every check compares a value before and after, never an absolute one.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.config import Settings
from bot.errors import ConfigError
from bot.models import Status
from tests.conftest import RC_TOKEN, TG_TOKEN, Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import until_final

USER = 5550001234  # a private chat: the chat id is the user's id
PROMPT = "a lighthouse through four seasons"
GOOD = {"TELEGRAM_BOT_TOKEN": TG_TOKEN, "RUNCOMFY_API_TOKEN": RC_TOKEN}

Key = tuple[str, tuple[tuple[str, str], ...]]


class Page:
    """One scrape of the metrics page: its text and every sample."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[Key, float] = {}
        self.label_values: set[str] = set()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
                self.label_values.update(sample.labels.values())

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        """The sum over every label set of ``name``."""
        return sum(v for (n, _), v in self.samples.items() if n == name)


def moved(before: Page, after: Page, name: str, **labels: str) -> float:
    return after.get(name, **labels) - before.get(name, **labels)


def address(bot: RunningBot) -> tuple[str, int]:
    server = bot.services.metrics
    assert server is not None, "the metrics server did not start"
    return server.address


async def scrape(bot: RunningBot) -> Page:
    host, port = address(bot)
    assert host == "127.0.0.1"
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"http://{host}:{port}/metrics")
    assert response.status_code == 200
    return Page(response.text)


async def test_metrics_are_off_by_default(
    bots: Bots, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(metrics, "BoundedServer", lambda *a, **k: started.append((a, k)))
    settings = Settings.from_env(GOOD)
    assert (settings.metrics_port, settings.metrics_listen) == (None, "127.0.0.1")

    bot = await bots.start()

    assert bot.settings.metrics_port is None
    assert bot.services.metrics is None
    assert started == []


async def test_a_job_moves_the_counters_and_the_page_keeps_secrets(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    bot = await bots.start(METRICS_PORT="0")
    before = await scrape(bot)
    # Queued long enough to be seen on the page, then generating for long enough that a poll
    # delayed by a loaded machine still sees it: every phase gets timed. While the page is read,
    # RunComfy holds its answers, so the job is still queued there.
    runcomfy.script_next(JobScript(queued_seconds=1.0, running_seconds=1.5))
    telegram.send_text(f"/seq 4 16:9 {PROMPT}", chat_id=USER)

    await telegram.wait_for(
        lambda: any(j.status == Status.QUEUED for j in bot.runner.active.values())
    )
    runcomfy.hold("status")
    during = await scrape(bot)
    runcomfy.release("status")
    assert moved(before, during, "seqbot_jobs_active", state="queued") == 1
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    after = await scrape(bot)

    for state in ("new", "submitting", "queued", "running", "sending", "done"):
        assert moved(before, after, "seqbot_jobs_total", state=state) == 1, state
    for state in metrics.ACTIVE_STATES:
        assert moved(before, after, "seqbot_jobs_active", state=state.value) == 0, state
    assert moved(before, after, "seqbot_images_delivered_total") == 4
    assert moved(before, after, "seqbot_cost_usd_total") == pytest.approx(0.12)
    assert moved(before, after, "seqbot_downloads_total", outcome="ok") == 4
    tg = "seqbot_telegram_requests_total"
    assert moved(before, after, tg, method="sendMediaGroup", outcome="ok") == 1
    assert moved(before, after, tg, method="sendMessage", outcome="ok") >= 2  # status, follow-up
    assert moved(before, after, tg, method="getUpdates", outcome="ok") >= 1
    rc = "seqbot_runcomfy_requests_total"
    assert moved(before, after, rc, endpoint="submit", outcome="ok") == 1
    assert moved(before, after, rc, endpoint="status", outcome="ok") >= 2
    # While it generates, the job is polled at /result (the last of those lists the images).
    assert moved(before, after, rc, endpoint="result", outcome="ok") >= 1
    for histogram in (
        "seqbot_ack_seconds",
        "seqbot_queue_wait_seconds",
        "seqbot_generation_seconds",
    ):
        assert moved(before, after, f"{histogram}_count") == 1, histogram
    for until in ("first_image", "done"):
        assert moved(before, after, "seqbot_delivery_seconds_count", until=until) == 1, until
    # The job sat in RunComfy's queue for a second (the bot takes the middle of the last poll
    # that saw it queued and the first that saw it generating); the ack came before all that.
    assert moved(before, after, "seqbot_queue_wait_seconds_sum") >= 0.4
    assert 0 < moved(before, after, "seqbot_ack_seconds_sum") < 5
    # The library's own process metrics come along (CPU and memory are what the targets are in).
    assert after.get("process_cpu_seconds_total") > 0

    # Nothing on the page says who asked, what, or with which keys.
    assert job.request_id
    for secret in (TG_TOKEN, TG_TOKEN.partition(":")[2], RC_TOKEN, PROMPT, job.request_id):
        assert secret not in after.text
    assert not re.search(rf"(?<![\d.]){USER}(?!\d)", after.text)
    assert not any(str(USER) in value for value in after.label_values)

    # Stopped with the bot: the port is closed.
    host, port = address(bot)
    await bots.stop(bot)
    assert bot.services.metrics is None
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass


async def test_flood_waits_and_trouble_show_up_as_outcomes_and_retries(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    bot = await bots.start(METRICS_PORT="0")
    before = await scrape(bot)
    telegram.rate_limit_next("sendMediaGroup", retry_after=1)
    runcomfy.fail_next("status", "500")
    runcomfy.fail_next("image", "503")

    telegram.send_text(f"/seq 2 1:1 {PROMPT}", chat_id=USER)
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    after = await scrape(bot)

    tg = "seqbot_telegram_requests_total"
    assert moved(before, after, tg, method="sendMediaGroup", outcome="429") == 1
    assert moved(before, after, tg, method="sendMediaGroup", outcome="ok") == 1
    assert moved(before, after, "seqbot_retries_total", api="telegram", reason="429") == 1
    rc = "seqbot_runcomfy_requests_total"
    assert moved(before, after, rc, endpoint="status", outcome="5xx") == 1
    assert moved(before, after, "seqbot_retries_total", api="runcomfy", reason="5xx") == 1
    assert moved(before, after, "seqbot_retries_total", api="download", reason="http_error") == 1
    assert moved(before, after, "seqbot_downloads_total", outcome="ok") == 2
    assert moved(before, after, "seqbot_images_delivered_total") == 2


async def test_requests_waiting_for_a_rate_limit_show_on_the_page(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    # RunComfy may take about one request every two seconds here: three jobs' requests queue up.
    bot = await bots.start(METRICS_PORT="0", RUNCOMFY_MAX_REQUESTS_PER_SECOND="1")
    idle = await scrape(bot)
    assert idle.get("seqbot_requests_waiting", api="runcomfy") == 0
    assert ("seqbot_requests_waiting", (("api", "telegram"),)) in idle.samples
    for n in range(3):
        telegram.send_text(f"/seq 2 {PROMPT}", chat_id=USER + n)
    await telegram.wait_for(lambda: bot.runner.waiting_for_slots["runcomfy"] >= 1)
    busy = await scrape(bot)
    # Each job has at most one request waiting at a time.
    assert 1 <= busy.get("seqbot_requests_waiting", api="runcomfy") <= 3


async def test_a_busy_port_is_logged_and_the_bot_runs_without_metrics(
    bots: Bots, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="bot.metrics"):
            bot = await bots.start(METRICS_PORT=str(port))
    assert bot.services.metrics is None
    assert f"metrics: cannot listen on 127.0.0.1 port {port}" in caplog.text


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"METRICS_PORT": "prometheus"}, "METRICS_PORT"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"METRICS_PORT": "-1"}, "METRICS_PORT"),
        ({"METRICS_LISTEN": "http://0.0.0.0"}, "METRICS_LISTEN"),
        (
            {
                "METRICS_PORT": "8080",
                "WEBHOOK_URL": "https://bot.example.org/seqbot",
                "WEBHOOK_SECRET": "s" * 16,
            },
            "METRICS_PORT",
        ),
    ],
)
def test_bad_metrics_settings_name_the_variable(changes: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**GOOD, **changes})
    assert info.value.variable == variable


def test_metrics_settings() -> None:
    settings = Settings.from_env({**GOOD, "METRICS_PORT": "9100", "METRICS_LISTEN": "0.0.0.0"})
    assert (settings.metrics_port, settings.metrics_listen) == (9100, "0.0.0.0")
    assert Settings.from_env({**GOOD, "METRICS_LISTEN": "::1"}).metrics_listen == "::1"


async def test_telegram_refusals_and_5xx_count_as_answers_not_network_trouble(
    bots: Bots, telegram: FakeTelegram
) -> None:
    bot = await bots.start(METRICS_PORT="0")
    before = await scrape(bot)
    telegram.fail_next("sendMessage", description="Bad Request: chat not found")
    telegram.fail_server_next("sendMessage", status=500)
    telegram.send_text("/help", chat_id=USER)
    telegram.send_text("/help", chat_id=USER)
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMessage")) >= 2)
    after = await scrape(bot)

    tg = "seqbot_telegram_requests_total"
    assert moved(before, after, tg, method="sendMessage", outcome="bad_request") == 1
    assert moved(before, after, tg, method="sendMessage", outcome="5xx") == 1
    assert moved(before, after, tg, method="sendMessage", outcome="network") == 0
