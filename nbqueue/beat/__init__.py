"""Periodic tasks: Celery's ``beat_schedule`` with interval and crontab schedules.

::

    from nbqueue.beat import crontab

    app.conf.beat_schedule = {
        "tidy-every-30s": {"task": "tasks.tidy", "schedule": 30.0},
        "report-at-7": {"task": "tasks.report", "schedule": crontab(minute=0, hour=7)},
    }
    worker = app.worker(beat=True)          # the Beat step sends them on time
"""

from __future__ import annotations

from .scheduler import ScheduleEntry, Scheduler, app_timezone, entry_from_spec
from .schedules import Schedule, crontab, maybe_schedule, schedule

__all__ = [
    "Schedule",
    "ScheduleEntry",
    "Scheduler",
    "app_timezone",
    "crontab",
    "entry_from_spec",
    "maybe_schedule",
    "schedule",
]
