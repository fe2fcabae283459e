"""The periodic scheduler: sends ``beat_schedule`` entries when they are due.

`Scheduler.tick` does one round (send what is due, say how long to wait) and takes its
time from an injectable clock, so tests drive it with a fake clock and no thread. The
worker's Beat step calls it from its own thread. Last-run times live in memory only:
an embedded scheduler starts afresh with its worker (interval entries first fire one
interval after the start, crontab entries at their next match), as Celery's beat does
with an empty schedule file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from ..exceptions import ConfigurationError
from .schedules import Schedule, maybe_schedule

__all__ = ["ScheduleEntry", "Scheduler", "app_timezone", "entry_from_spec"]

logger = logging.getLogger(__name__)

_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options"})

Clock = Callable[[], datetime]
Sender = Callable[..., Any]


@dataclass
class ScheduleEntry:
    """One ``beat_schedule`` entry and when it last ran."""

    name: str
    task: str
    schedule: Schedule
    last_run_at: datetime
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    total_run_count: int = 0

    def is_due(self, now: datetime) -> tuple[bool, float]:
        return self.schedule.is_due(self.last_run_at, now)


def entry_from_spec(name: str, spec: Mapping[str, Any], now: datetime) -> ScheduleEntry:
    """A `ScheduleEntry` from Celery's dict form; a clear error names the entry."""
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"beat_schedule[{name!r}] must be a dict, not {spec!r}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ConfigurationError(
            f"beat_schedule[{name!r}] has unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}"
        )
    if not isinstance(spec.get("task"), str) or "schedule" not in spec:
        raise ConfigurationError(f"beat_schedule[{name!r}] needs a 'task' name and a 'schedule'")
    try:
        schedule = maybe_schedule(spec["schedule"])
    except ConfigurationError as exc:
        raise ConfigurationError(f"beat_schedule[{name!r}]: {exc}") from None
    return ScheduleEntry(
        name=name,
        task=spec["task"],
        schedule=schedule,
        last_run_at=now,
        args=tuple(spec.get("args") or ()),
        kwargs=dict(spec.get("kwargs") or {}),
        options=dict(spec.get("options") or {}),
    )


def app_timezone(conf: Any) -> tzinfo:
    """The timezone crontab fields are read in: ``timezone``, else UTC (or local time
    when ``enable_utc`` is off), as in Celery."""
    if conf.timezone:
        from zoneinfo import ZoneInfo

        return ZoneInfo(str(conf.timezone))
    if conf.enable_utc:
        return timezone.utc
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else timezone.utc


class Scheduler:
    """Sends due entries of a schedule (default: the app's ``beat_schedule``).

    Parameters
    ----------
    app:
        The app whose ``send_task`` is used and whose settings are read.
    schedule:
        Entries in Celery's ``beat_schedule`` form; default ``app.conf.beat_schedule``.
    clock:
        Returns the time now, timezone-aware (default: the real UTC time).
    max_interval:
        The longest `tick` ever asks to wait (``beat_max_loop_interval``).
    send:
        Called as ``send(task, args, kwargs, **options)``; default ``app.send_task``.
    """

    def __init__(
        self,
        app: Any,
        schedule: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        clock: Clock | None = None,
        max_interval: float | None = None,
        send: Sender | None = None,
    ) -> None:
        conf = app.conf
        self.app = app
        self.tz = app_timezone(conf)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.max_interval = float(
            conf.beat_max_loop_interval if max_interval is None else max_interval
        )
        self.send = app.send_task if send is None else send
        self.sent = 0
        self._lock = threading.Lock()
        now = self.now()
        source = conf.beat_schedule if schedule is None else schedule
        self.entries = {name: entry_from_spec(name, spec, now) for name, spec in source.items()}

    def now(self) -> datetime:
        return self.clock().astimezone(self.tz)

    def tick(self) -> float:
        """Send every entry due now; returns the seconds to wait before the next tick."""
        with self._lock:
            now = self.now()
            wait = self.max_interval
            for entry in self.entries.values():
                due, next_in = entry.is_due(now)
                if due:
                    self._apply(entry, now)
                wait = min(wait, next_in)
            return max(wait, 0.0)

    def _apply(self, entry: ScheduleEntry, now: datetime) -> None:
        """Send one entry; it counts as run even if sending fails (no resend storm)."""
        entry.last_run_at = now
        entry.total_run_count += 1
        options = dict(entry.options)
        options["headers"] = {**(options.get("headers") or {}), "celery_beat_task": True}
        try:
            self.send(entry.task, entry.args, entry.kwargs, **options)
        except Exception:
            logger.exception("beat: could not send %r (task %s)", entry.name, entry.task)
            return
        self.sent += 1
        logger.info("beat: sent %r (task %s)", entry.name, entry.task)

    def info(self) -> dict[str, Any]:
        """Each entry's task, run count and next run time (what the Beat step reports)."""
        with self._lock:
            return {
                name: {
                    "task": entry.task,
                    "schedule": repr(entry.schedule),
                    "total_run_count": entry.total_run_count,
                    "last_run_at": entry.last_run_at.isoformat(),
                    "next_run_at": entry.schedule.next_run(entry.last_run_at).isoformat(),
                }
                for name, entry in self.entries.items()
            }
