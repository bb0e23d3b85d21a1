"""The /seq path end to end: the real Application against both loopback fakes."""

from __future__ import annotations

from tests.conftest import RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram

CHAT = 123456789


async def test_four_images_arrive_as_one_album(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=2, running_polls=2))
    command = telegram.send_text("/seq 4 16:9 a lighthouse through four seasons")
    albums = await telegram.wait_for(lambda: telegram.calls_to("sendMediaGroup", ok_only=True))
    assert len(albums) == 1
    assert telegram.errors == [] and runcomfy.errors == []
