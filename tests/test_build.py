"""How the bot is installed and checked: the lock file, the Dockerfile, CI and the README agree."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK = (ROOT / "requirements.lock").read_text()
README = (ROOT / "README.md").read_text()


def pins() -> dict[str, tuple[str, list[str]]]:
    """Package name -> (version, hashes), from the lock file."""
    found: dict[str, tuple[str, list[str]]] = {}
    for entry in LOCK.replace("\\\n", " ").splitlines():
        entry = re.sub(r"(^|\s)#.*", "", entry).strip()  # comments ("# via …"), not "--hash=…"
        if not entry:
            continue
        m = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", entry)
        assert m, f"not a pinned requirement: {entry!r}"
        found[canonicalize_name(m[1])] = (m[2], re.findall(r"--hash=sha256:[0-9a-f]{64}", entry))
    return found


def test_every_locked_package_is_pinned_with_hashes() -> None:
    locked = pins()
    assert locked
    assert [name for name, (_, hashes) in locked.items() if not hashes] == []


def test_every_runtime_dependency_is_locked_within_its_range() -> None:
    locked = pins()
    for spec in PROJECT["dependencies"]:
        wanted = Requirement(spec)
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{wanted.name} is not in requirements.lock: refresh it (README)"
        version = locked[name][0]
        assert wanted.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {wanted.name} {version}, outside {wanted.specifier}"
        )
        # What the extras in brackets add (python-telegram-bot's rate limiter and webhook server).
        for extra in wanted.extras:
            for needed in map(Requirement, requires(wanted.name) or []):
                if needed.marker is not None and needed.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(needed.name) in locked, (
                        f"{needed.name} ({wanted.name}[{extra}]) is not in requirements.lock"
                    )


def test_the_lock_says_how_it_was_made_and_the_readme_says_the_same() -> None:
    made_by = re.search(r"^#\s+(uv pip compile .+)$", LOCK, re.MULTILINE)
    assert made_by, "requirements.lock does not name the command that made it"
    assert f".venv/bin/{made_by[1]}\n" in README


def test_the_image_installs_the_lock_then_the_bot_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    install_lock = re.search(r"pip install .*--require-hashes -r \S*requirements\.lock", dockerfile)
    install_bot = re.search(r"pip install .*--no-deps", dockerfile)
    assert install_lock and install_bot
    assert install_lock.start() < install_bot.start()


def test_ci_runs_the_readme_s_commands_to_the_letter() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.startswith((".venv/", "python3 "))]
    assert len(commands) == 2  # the tests, then the linters and the type checker
    for command in commands:
        assert f"```\n{command}\n```" in README, command
    assert "pytest" in commands[0] and "mypy bot" in commands[1]
