"""When periodic tasks are due: `schedule` (every N seconds) and `crontab` (Celery's fields).

A schedule answers one question for the scheduler: given when an entry last ran and the
time now, is it due, and how many seconds until it should be asked again? Times are
timezone-aware datetimes; a crontab reads its fields in the timezone of ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from croniter import croniter

from ..exceptions import ConfigurationError

__all__ = ["Schedule", "crontab", "maybe_schedule", "schedule"]


class Schedule(Protocol):
    """What the scheduler asks of a schedule."""

    def is_due(self, last_run_at: datetime, now: datetime) -> tuple[bool, float]:
        """``(due now, seconds until the next check)``."""
        ...

    def next_run(self, last_run_at: datetime) -> datetime:
        """The first time after `last_run_at` this schedule fires."""
        ...


def _due(schedule: Schedule, last_run_at: datetime, now: datetime) -> tuple[bool, float]:
    due_at = schedule.next_run(last_run_at)
    if due_at <= now:
        return True, max((schedule.next_run(now) - now).total_seconds(), 0.0)
    return False, (due_at - now).total_seconds()


class schedule:
    """Every `run_every` seconds (a number or a `timedelta`), counted from the last run."""

    def __init__(self, run_every: float | timedelta) -> None:
        seconds = (
            run_every.total_seconds() if isinstance(run_every, timedelta) else float(run_every)
        )
        if not seconds > 0:
            raise ConfigurationError(f"a schedule needs a positive interval, not {run_every!r}")
        self.run_every = timedelta(seconds=seconds)

    @property
    def seconds(self) -> float:
        return self.run_every.total_seconds()

    def next_run(self, last_run_at: datetime) -> datetime:
        return last_run_at + self.run_every

    def is_due(self, last_run_at: datetime, now: datetime) -> tuple[bool, float]:
        return _due(self, last_run_at, now)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, schedule) and other.run_every == self.run_every

    def __hash__(self) -> int:
        return hash(self.run_every)

    def __repr__(self) -> str:
        return f"<freq: {self.seconds:g}s>"


def _field(value: Any) -> str:
    """A crontab field as cron text: ``5``, ``"*/15"``, ``"mon-fri"`` or ``[0, 30]``."""
    if isinstance(value, str):
        return value.strip().replace(" ", "")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(_field(v) for v in value)
    raise ConfigurationError(f"a crontab field cannot be {value!r}")


class crontab:
    """Cron-style: fires when every field matches, read in the scheduler's timezone.

    Fields take Celery's forms: numbers, ``"*"``, ``"*/15"``, ranges ``"8-17"``, lists
    (``"0,30"`` or ``[0, 30]``) and day names (``day_of_week="mon-fri"``, Sunday is 0).
    As in Celery, a day must match *both* ``day_of_month`` and ``day_of_week``.
    """

    def __init__(
        self,
        minute: Any = "*",
        hour: Any = "*",
        day_of_week: Any = "*",
        day_of_month: Any = "*",
        month_of_year: Any = "*",
    ) -> None:
        fields = (minute, hour, day_of_month, month_of_year, day_of_week)
        self.expression = " ".join(_field(f) for f in fields)
        if not croniter.is_valid(self.expression):
            raise ConfigurationError(
                f"invalid crontab(minute={minute!r}, hour={hour!r}, day_of_week={day_of_week!r}, "
                f"day_of_month={day_of_month!r}, month_of_year={month_of_year!r})"
            )

    def next_run(self, last_run_at: datetime) -> datetime:
        return croniter(self.expression, last_run_at, day_or=False).get_next(datetime)

    def is_due(self, last_run_at: datetime, now: datetime) -> tuple[bool, float]:
        return _due(self, last_run_at.astimezone(now.tzinfo), now)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other.expression == self.expression

    def __hash__(self) -> int:
        return hash(self.expression)

    def __repr__(self) -> str:
        return f"<crontab: {self.expression} (m h dM MY dW)>"


def maybe_schedule(value: Any) -> Schedule:
    """A schedule from what ``beat_schedule`` allows: seconds, a timedelta, or a schedule."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return schedule(value)
    if isinstance(value, timedelta):
        return schedule(value)
    if hasattr(value, "is_due") and hasattr(value, "next_run"):
        return value
    raise ConfigurationError(
        f"unsupported schedule {value!r}: use seconds, a timedelta, "
        "nbqueue.beat.schedule(...) or nbqueue.beat.crontab(...)"
    )
