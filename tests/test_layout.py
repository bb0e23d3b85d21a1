"""No class in the bot too big to read; the jobs package is a part per step behind JobRunner."""

import ast
import importlib
import logging
from pathlib import Path

from bot import jobs
from bot.jobs.deliver import DeliveryStep
from bot.jobs.estimates import Estimates
from bot.jobs.poll import PollStep
from bot.jobs.runner import JobRunner
from bot.jobs.states import Transitions
from bot.jobs.submit import SubmitStep
from tests.conftest import RunningBot

BOT = Path(__file__).parent.parent / "bot"
MOST_LINES = 350


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(BOT).as_posix(): ast.parse(path.read_text())
        for path in sorted(BOT.rglob("*.py"))
    }


def test_no_class_in_the_bot_is_over_350_lines() -> None:
    sizes = {
        f"{name}:{node.name}": (node.end_lineno or node.lineno) - node.lineno + 1
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    too_big = {name: n for name, n in sizes.items() if n > MOST_LINES}
    assert too_big == {}
    # Every part of the bot was looked at, the packages' modules too.
    assert {
        "jobs/runner.py:JobRunner",
        "store/jobs.py:JobStore",
        "delivery/__init__.py:Delivery",
    } <= set(sizes)


def test_the_rest_of_the_bot_reaches_jobs_through_job_runner_only() -> None:
    assert jobs.JobRunner is JobRunner and jobs.__all__ == ["JobRunner"]
    importers = {
        name: sorted(
            {
                node.module
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("bot.jobs")
            }
        )
        for name, tree in _modules().items()
        if not name.startswith("jobs/")
    }
    # Only the wiring (and the typed context) know the runner; nothing below jobs imports it,
    # so there is no cycle, and no one reaches past the package into its parts.
    assert {name: mods for name, mods in importers.items() if mods} == {
        "app.py": ["bot.jobs"],
        "context.py": ["bot.jobs"],
    }


def test_every_part_of_a_jobs_life_logs_as_bot_jobs() -> None:
    # Operators filter on the logger's name: splitting the runner must not rename its lines.
    parts = sorted(p.stem for p in (BOT / "jobs").glob("*.py") if p.stem != "__init__")
    assert parts == ["deliver", "estimates", "poll", "runner", "states", "submit"]
    for part in parts:
        module = importlib.import_module(f"bot.jobs.{part}")
        if hasattr(module, "log"):
            assert module.log is logging.getLogger("bot.jobs"), part


async def test_the_runner_is_made_of_one_part_per_step(bot: RunningBot) -> None:
    runner = bot.runner
    assert isinstance(runner.submits, SubmitStep)
    assert isinstance(runner.polls, PollStep)
    assert isinstance(runner.deliveries, DeliveryStep)
    assert isinstance(runner.states, Transitions) and isinstance(runner.estimates, Estimates)
    # They share one record of live jobs, one status board, one set of estimates.
    assert runner.states.active is runner.active
    assert runner.submits.status is runner.polls.status is runner.deliveries.status
    assert runner.polls.estimates is runner.deliveries.estimates is runner.estimates
