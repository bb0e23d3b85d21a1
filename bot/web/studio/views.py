"""What the studio's API answers about a job (pure): a series' summary and its details."""

from __future__ import annotations

from collections.abc import Callable

from bot import render, schema
from bot.models import Job, Status
from bot.schedule import Estimate
from bot.thumbs import delivered_indexes

TITLE_CHARS = 120
# Makes an image's URL: (job, index, kind) -> "/…/app/img/<token>".
ImageUrl = Callable[[int, int, str], str]


def title(prompt: str) -> str:
    """The first line of the prompt, at most TITLE_CHARS characters."""
    first = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    return render.shorten(first, TITLE_CHARS)


# Generating counts for this much of the bar, sending for the rest (as the status message's).
_GENERATING_SHARE = 0.9


def progress(job: Job, estimate: Estimate | None = None, now: float = 0.0) -> float | None:
    """0..1 where it is known: a finished job all of it; a generating one as far as similar
    jobs' usual time says (never quite there); a delivery by the images sent."""
    if job.status == Status.DONE:
        return 1.0
    if job.status == Status.SENDING and job.count:
        return _GENERATING_SHARE + (1 - _GENERATING_SHARE) * min(
            1.0, job.delivered_images / job.count
        )
    window = estimate.window if estimate else None
    if job.status == Status.RUNNING and window is not None and job.started_at:
        expected = window.expected
        done = (now - job.started_at) / expected if expected > 0 else 1.0
        return round(_GENERATING_SHARE * min(0.95, max(0.0, done)), 3)
    return None


def panel_text(job: Job, index: int, versions: dict[int, Job] | None = None) -> str:
    """The panel's own text (script mode; a redone panel's: its new text), else the prompt: an
    image's alt text."""
    redo = (versions or {}).get(index)
    if redo is not None:
        return redo.prompt
    if 0 <= index < len(job.panels):
        return job.panels[index]
    return job.prompt


def _image(job: Job, index: int, versions: dict[int, Job] | None) -> tuple[int, int]:
    """(job, image index) of the panel as shown: its latest version's own image if redone."""
    redo = (versions or {}).get(index)
    return (redo.id, 0) if redo is not None else (job.id, index)


def summary(
    job: Job,
    url: ImageUrl,
    lang: str,
    thumbs: list[int] | None = None,
    *,
    estimate: Estimate | None = None,
    now: float = 0.0,
    versions: dict[int, Job] | None = None,
) -> dict:
    """A series in the gallery (the contract's SeriesSummary). ``thumbs``: the panels shown
    (default: every delivered one; a missing thumbnail is made when asked for); ``estimate``:
    what a generating job's status message counts on; ``versions``: redone panels (story)."""
    shown = delivered_indexes(job) if thumbs is None else thumbs
    return {
        "id": job.id,
        "title": title(job.prompt),
        "created_at": int(job.created_at),
        "count": job.count,
        "ratio": schema.ratio_of(job.size),
        "mode": job.mode,
        "status": job.status.value,
        "state_text": render.status_word(job.status, lang),
        "progress": progress(job, estimate, now),
        "thumbs": [
            {
                "index": i,
                "url": url(*_image(job, i, versions), "t"),
                "alt": panel_text(job, i, versions),
            }
            for i in shown
        ],
        # The story (➡️ Continue): which episode, after which job; None for a first one.
        "episode": job.episode,
        "continues": job.continues,
    }


def detail(
    job: Job,
    url: ImageUrl,
    lang: str,
    actions: list[str],
    *,
    estimate: Estimate | None = None,
    now: float = 0.0,
    versions: dict[int, Job] | None = None,
) -> dict:
    """A series opened: the summary, the prompt, every delivered panel (its latest version),
    details, actions."""
    indexes = delivered_indexes(job)
    out = summary(job, url, lang, indexes, estimate=estimate, now=now, versions=versions)
    versions = versions or {}
    out.update(
        {
            "prompt": job.prompt,
            "panels": [
                {
                    "index": i,
                    "text": panel_text(job, i, versions),
                    "thumb": url(*_image(job, i, versions), "t"),
                    "full": url(*_image(job, i, versions), "f"),
                    "version": (versions[i].redo_version or 2) if i in versions else 1,
                }
                for i in indexes
            ],
            "params": {"size": job.size, "mode": job.mode, "seed": job.seed},
            "cost": job.cost,
            "refs": [
                {"kind": ref.kind, "name": ref.name or None, "thumb": url(job.id, n, "r")}
                for n, ref in enumerate(job.refs)
            ],
            "error": job.error,
            "actions": actions,
        }
    )
    return out
