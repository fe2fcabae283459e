"""Time limits of a worker's running tasks, kept by the worker's Timer step.

When a run starts, its limits are resolved — the message's ``timelimit`` header
``[hard, soft]`` first, then the worker's override (``set_time_limit``, Celery's
``time_limit`` command), then the task's ``time_limit``/``soft_time_limit``, then
``task_time_limit``/``task_soft_time_limit`` — and a timer entry is added for each
one set. No limit, no timer entry. At the soft limit `SoftTimeLimitExceeded` is raised
inside the task's thread (the task may catch it to clean up); at the hard limit the run
fails with `TimeLimitExceeded` and the threads pool gives the thread up and starts a
new one, so the pool keeps its size. See `nbqueue.worker.interrupts` for what cannot be
interrupted.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from ..exceptions import SoftTimeLimitExceeded

__all__ = ["TimeLimits", "resolve_time_limits"]

logger = logging.getLogger(__name__)


def resolve_time_limits(
    timelimit: Any, name: str, task: Any, worker: Any
) -> tuple[float | None, float | None]:
    """``(hard, soft)`` seconds for one run (None: no limit).

    The message's ``timelimit`` header wins when it sets both; otherwise the worker's
    override (``set_time_limit``, which replaces both, as Celery's command does) or the
    task's own limits, each falling back to the app's settings.
    """
    hard, soft = tuple(timelimit or (None, None))
    if hard and soft:
        return hard, soft
    override = worker.time_limits.get(name)
    task_hard, task_soft = override or (task.time_limit, task.soft_time_limit)
    conf = task.app.conf
    return (
        hard or task_hard or conf.task_time_limit or None,
        soft or task_soft or conf.task_soft_time_limit or None,
    )


class TimeLimits:
    """Resolves each run's limits and fires them from the worker's timer thread."""

    #: seconds before the first new attempt to interrupt a thread not at a safe point
    retry_interval = 0.002
    #: the longest wait between attempts (a thread may stay in unsafe code for long)
    retry_max = 0.5

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        #: guards arming, disarming and interrupting this worker's runs
        self.lock = threading.Lock()
        self._timer: Any = None

    def limits_for(self, request: Any) -> tuple[float | None, float | None]:
        """``(hard, soft)`` seconds for `request` (None: no limit)."""
        return resolve_time_limits(
            request.task_message.timelimit, request.name, request.task, self.worker
        )

    @property
    def timer(self) -> Any:
        if self._timer is None:
            self._timer = self.worker.steps["timer"].timer
        return self._timer

    def later(self, fun: Any, *args: Any, attempt: int = 0) -> None:
        """Try ``fun(*args, attempt=attempt + 1)`` again shortly (an interruption waiting
        for a safe point), backing off to at most `retry_max` seconds."""
        delay = min(self.retry_interval * 2**attempt, self.retry_max)
        self.timer.call_after(delay, functools.partial(fun, *args, attempt=attempt + 1))

    def start(self, request: Any) -> None:
        """Called as a run starts, before the task's code: schedule its limits, if any.

        A pool that enforces limits itself (the process pool kills its child) is left to it.
        """
        if getattr(self.worker.steps["pool"].pool, "enforces_time_limits", False):
            return
        hard, soft = self.limits_for(request)
        if not hard and not soft:
            return
        entries = []
        if soft and (not hard or soft < hard):
            entries.append(self.timer.call_after(float(soft), self._soft, request, soft))
        if hard:
            entries.append(self.timer.call_after(float(hard), self._hard, request, hard))
        request.timers = entries

    def _soft(self, request: Any, seconds: float) -> None:
        if request.interrupt(SoftTimeLimitExceeded):
            logger.warning(
                "Soft time limit (%ss) exceeded for %s[%s]", seconds, request.name, request.id
            )

    def _hard(self, request: Any, seconds: float) -> None:
        if request.time_limit_exceeded(seconds):
            logger.error(
                "Hard time limit (%ss) exceeded for %s[%s]", seconds, request.name, request.id
            )
