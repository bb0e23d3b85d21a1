"""The life of a job: record, submit once, poll to the end, deliver once; resume after a restart.

One asyncio task per job walks it through its states (``models.Status``), with SQLite as the
record; what it shows goes through ``status``, what it sends through ``delivery``. The rest of
the bot talks to ``JobRunner`` only; it is made of a part per step:

    JobRunner       runner.py     start, resume at start, cancel, /show, stop; each job's task
     ├── SubmitStep   submit.py     the one submit: its rate-limit slot, on disk before the POST,
     │                              a stop's grace for a POST on its way
     ├── PollStep     poll.py       the poll loop: schedule, a Cancel owed, the deadline, the result
     ├── DeliveryStep deliver.py    the images to ``delivery``, by the deadline or later by /show
     ├── Transitions  states.py     a state change recorded, logged, counted; ending and settling
     └── Estimates    estimates.py  what a status may say about time (queue pace, similar jobs)

All of them log as ``bot.jobs``.
"""

from bot.jobs.runner import JobRunner

__all__ = ["JobRunner"]
