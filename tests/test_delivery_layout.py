"""Delivery is split by concern: a part per concern behind one object (sizes: test_layout.py)."""

import ast
import inspect
import logging
from pathlib import Path

from bot.delivery import Delivery, albums, files, result
from bot.delivery.albums import AlbumSender
from bot.delivery.files import FileRequests
from bot.delivery.result import ResultDelivery

BOT = Path(__file__).parent.parent / "bot"
# What the rest of the bot calls on ``runner.delivery`` (jobs.py, handlers.py, app.py).
PUBLIC = {
    "until",
    "deliver",
    "show_again",
    "undelivered",
    "post_actions",
    "claim",
    "release",
    "build_turn",
    "send_originals",
    "send_sheet",
    "send_zip",
    "request",  # a files button's whole request (claim, turn, send): the chat's and the studio's
}


def test_the_rest_of_the_bot_talks_to_delivery_as_before() -> None:
    public = {name for name in vars(Delivery) if not name.startswith("_")}
    assert public == PUBLIC
    # jobs.py builds it with these (and sets on_trouble afterwards).
    assert list(inspect.signature(Delivery).parameters) == [
        "bot",
        "store",
        "downloader",
        "originals",
        "background",
        "retry_delay",
        "max_retry_delay",
        "deadline",
        "read_timeout",
        "builds_at_once",
        "story",
    ]
    # Each public call is the one of the part that owns the concern, with the same parameters.
    owners = {name: ResultDelivery for name in ("until", "deliver", "show_again", "undelivered")}
    owners |= {"post_actions": ResultDelivery}
    owners |= {name: FileRequests for name in PUBLIC - set(owners) - {"request"}}
    for name, part in owners.items():
        assert name in vars(part), name
        assert inspect.signature(getattr(Delivery, name)) == inspect.signature(
            getattr(part, name)
        ), name
    assert "send" in vars(AlbumSender)


def test_parts_are_layered_without_cycles() -> None:
    """albums below files and result, which know nothing of each other; nothing above delivery."""

    def imported(module: object) -> set[str]:
        tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
        return {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }

    above = {"bot.jobs", "bot.handlers", "bot.app", "bot.payment_handlers", "bot.status"}
    for module in (albums, files, result):
        assert not imported(module) & above, module
    assert not {m for m in imported(albums) if m.startswith("bot.delivery")}
    assert {m for m in imported(files) if m.startswith("bot.delivery")} == {"bot.delivery.albums"}
    assert {m for m in imported(result) if m.startswith("bot.delivery")} == {"bot.delivery.albums"}


def test_log_lines_keep_their_logger_name() -> None:
    # Operators filter on it: the split must not rename what the lines say they come from.
    assert {albums.log, files.log, result.log} == {logging.getLogger("bot.delivery")}
