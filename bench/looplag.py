"""Run ``python -m bot`` with a 5 ms ticker on its event loop: how late the loop ever was, and what
held it (``bench/run.py --loop-lag``).

    python bench/looplag.py OUT.json -m bot

Every event loop the process makes gets a task that sleeps 5 ms at a time and records how much
later than that it woke: the loop was busy with something else for that long. asyncio's debug mode
(``PYTHONASYNCIODEBUG=1``, set by ``--loop-lag debug``) names each callback that ran longer than
``SLOW`` seconds; those lines are collected too. At exit, OUT.json gets the lateness percentiles,
the ten worst ticks (with when they happened) and the slow callbacks.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import runpy
import sys
import time
from asyncio import base_events
from pathlib import Path

TICK = 0.005
SLOW = 0.03  # seconds: asyncio's debug mode names callbacks longer than this

lateness: list[tuple[float, float]] = []  # (lateness in seconds, time.time() of the tick)
slow: list[str] = []


class _SlowCallbacks(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Executing "):
            slow.append(f"{time.time():.3f} {text[:400]}")


async def _tick() -> None:
    while True:
        start = time.perf_counter()
        await asyncio.sleep(TICK)
        lateness.append((time.perf_counter() - start - TICK, time.time()))


_init = base_events.BaseEventLoop.__init__


def _patched_init(self: base_events.BaseEventLoop) -> None:
    _init(self)
    self.slow_callback_duration = SLOW
    self.call_soon(lambda: self.create_task(_tick()))


def _report(out: Path) -> None:
    values = sorted(v for v, _ in lateness)
    if not values:
        return

    def pct(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    worst = sorted(lateness, reverse=True)[:10]
    out.write_text(
        json.dumps(
            {
                "ticks": len(values),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
                "p999_ms": pct(0.999),
                "max_ms": values[-1] * 1000,
                "over_50_ms": sum(v > 0.05 for v in values),
                "worst": [{"ms": v * 1000, "at": at} for v, at in worst],
                "slow_callbacks": slow,
            },
            indent=1,
        )
    )


def main() -> None:
    out = Path(sys.argv[1])
    module = sys.argv[sys.argv.index("-m") + 1]
    sys.argv = [module, *sys.argv[sys.argv.index("-m") + 2 :]]
    base_events.BaseEventLoop.__init__ = _patched_init  # type: ignore[method-assign]
    logging.getLogger("asyncio").addHandler(_SlowCallbacks())
    atexit.register(_report, out)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
