"""One delivered task message in a worker: its fields, its acknowledgement, its run.

A `Request` is also the run's guard (`nbqueue.execution.RunGuard`): while the task's own
code runs, a time limit or ``revoke(terminate=True)`` can raise an exception inside its
thread (`interrupt`), or give up on the thread altogether (`stop`): the outcome is then
recorded at once from a fresh pool thread, and the abandoned one exits when it can.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from datetime import datetime, timezone
from typing import Any

from .. import states
from ..exceptions import TaskRevokedError, TimeLimitExceeded
from ..execution import (
    HardTimeLimit,
    Interrupt,
    Outcome,
    RunGuard,
    Terminate,
    build_context,
    finish_run,
    format_traceback,
    record_revoked,
    run_task,
)
from ..protocol import TaskMessage
from ..task import Task
from . import interrupts

__all__ = ["Request", "signal_number"]

logger = logging.getLogger(__name__)


class Request(RunGuard):
    """A task message accepted by a worker, from delivery to acknowledgement."""

    __slots__ = (
        "acknowledged",
        "context",
        "delivery_info",
        "eta",
        "finished",
        "id",
        "limits",
        "message",
        "name",
        "outcome",
        "signum",
        "stop_outcome",
        "task",
        "task_message",
        "thread",
        "time_start",
        "timers",
        "worker",
        "worker_pid",
    )

    clear_pending = interrupts.set_async_exc

    def __init__(
        self, worker: Any, message: Any, task_message: TaskMessage, task: Task, limits: Any
    ) -> None:
        super().__init__(limits.lock)
        self.worker = worker
        self.limits = limits
        self.message = message
        self.task_message = task_message
        self.task = task
        self.id = task_message.id
        self.name = task_message.name
        info = message.delivery_info or {}
        self.delivery_info = {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "priority": message.properties.get("priority"),
            "redelivered": bool(info.get("redelivered") or message.headers.get("redelivered")),
        }
        self.eta = task_message.eta
        self.acknowledged = False
        self.time_start: float | None = None
        self.worker_pid: int | None = None
        self.thread: Any = None
        self.context: Any = None
        self.outcome: Outcome | None = None
        self.stop_outcome: Outcome | None = None
        self.signum: int | None = None
        self.timers: Any = None
        self.finished = False

    # acknowledgement ---------------------------------------------------------------------
    @property
    def acks_late(self) -> bool:
        return bool(self.task.setting("acks_late", "task_acks_late"))

    def ack(self) -> None:
        if not self.acknowledged:
            self.acknowledged = True
            self.message.ack()

    def reject(self, requeue: bool = False) -> bool:
        """Reject the message unless it was acknowledged already; True if it was rejected."""
        if self.acknowledged:
            return False
        self.acknowledged = True
        self.message.reject(requeue=requeue)
        return True

    def _reject_and_announce(self, requeue: bool) -> None:
        if self.reject(requeue=requeue):
            self.worker.emit_task_event("task-rejected", self.id, requeue=requeue)

    def _acks_on(self, what: str) -> bool:
        """``acks_on_failure`` / ``acks_on_timeout``, falling back as Celery 5.7 does."""
        task = self.task
        value = getattr(task, f"acks_on_{what}")
        if value is None:
            value = task.app.conf[f"task_acks_on_{what}"]
        if value is None:
            value = task.setting("acks_on_failure_or_timeout", "task_acks_on_failure_or_timeout")
        return value is None or bool(value)

    # expiry ------------------------------------------------------------------------------
    def expired(self, now: datetime | None = None) -> bool:
        expires = self.task_message.expires
        if expires is None:
            return False
        return expires <= (now or datetime.now(timezone.utc))

    # running -----------------------------------------------------------------------------
    def execute(self) -> Outcome:
        """Run the task in the calling (pool) thread, acknowledging early or late."""
        worker = self.worker
        expired = self.expired()
        if expired or self.id in worker.state.revoked:  # while it waited in the pool's queue
            worker.discard_revoked(self, expired=expired)
            return Outcome(states.REVOKED)
        self.time_start = time.time()
        worker.state.on_active(self)
        if not self.acks_late:
            self.ack()
        worker.on_request_start(self)
        context = self.context = build_context(
            self.task, self.task_message, hostname=worker.hostname, delivery_info=self.delivery_info
        )
        context._events = worker.emit_task_event
        self.limits.start(self)  # before the run: no worker code inside the guarded window
        outcome = Outcome(states.FAILURE)
        try:
            outcome = run_task(
                self.task,
                self.task_message,
                context,
                run_coroutine=worker.run_coroutine,
                guard=self,
            )
        except Exception as exc:
            outcome = self._internal_error(exc)
        finally:
            with self.lock:
                self.finished = True
            self._cancel_timers()
            if not self.abandoned:
                self._done(outcome)
        return outcome

    def discard(self, *, expired: bool = False) -> None:
        """Never run: ack, store REVOKED (a chord it belongs to learns of it), announce."""
        self.ack()
        reason = TaskRevokedError("expired" if expired else "revoked")
        context = self.context = self.context or build_context(
            self.task,
            self.task_message,
            hostname=self.worker.hostname,
            delivery_info=self.delivery_info,
        )
        try:
            record_revoked(self.task, context, reason)
        except Exception:
            logger.exception("%s: could not record %r as revoked", self.worker.hostname, self)
        self._announce_revoked(terminated=False, expired=expired)

    def _internal_error(self, exc: Exception) -> Outcome:
        """The worker failed around the task (e.g. storing its result): log, signal, fail."""
        logger.exception("%s: internal error running %r", self.worker.hostname, self)
        self.task.app.signals.task_internal_error.send(
            sender=self.task,
            task_id=self.id,
            args=self.task_message.args,
            kwargs=self.task_message.kwargs,
            request=self.context,
            exception=exc,
        )
        return Outcome(states.FAILURE, exception=exc)

    def _done(self, outcome: Outcome) -> None:
        """Acknowledge as the outcome requires, then account and announce it."""
        self.outcome = outcome
        try:
            self._settle(outcome)
        finally:
            if outcome.state == states.REVOKED:
                self._announce_revoked(terminated=True)
            self.worker.state.on_done(self, outcome.state)
            self.worker.on_request_done(self, outcome)

    def _settle(self, outcome: Outcome) -> None:
        state = outcome.state
        if state == states.REJECTED:
            self._reject_and_announce(outcome.requeue)
        elif state == states.FAILURE and self.acks_late:
            if isinstance(outcome.exception, TimeLimitExceeded):
                if self._acks_on("timeout"):
                    self.ack()
                else:
                    self._reject_and_announce(requeue=True)
            elif self._acks_on("failure"):
                self.ack()
            else:
                self._reject_and_announce(requeue=False)
        else:
            self.ack()

    def _announce_revoked(self, *, terminated: bool, expired: bool = False) -> None:
        signum = self.signum if terminated else None
        self.task.app.signals.task_revoked.send(
            sender=self.task,
            request=self.context,
            terminated=terminated,
            signum=signum,
            expired=expired,
        )
        self.worker.emit_task_event(
            "task-revoked", self.id, terminated=terminated, signum=signum, expired=expired
        )

    # the run guard: limits and terminate ----------------------------------------------------
    def _cancel_timers(self) -> None:
        timers, self.timers = self.timers, None
        for entry in timers or ():
            entry.cancel()

    def _not_yet(self) -> bool:
        """(lock held) The task's code has not started yet: an interruption must wait."""
        return not self.armed and not self.thread_id and not self.finished

    def _raise_if_safe(self, exc_type: type[BaseException]) -> bool:
        """(lock held) Raise `exc_type` in the task's code now, if it stands at a safe point."""
        if not self.armed or not interrupts.safe_to_raise(self.thread_id):
            return False
        self.injected = True
        retry = functools.partial(self.limits.later, self._raise_when_safe, exc_type)
        interrupts.raise_in_thread(self.thread_id, exc_type, on_lost=retry)
        return True

    def interrupt(self, exc_type: type[BaseException], *, attempt: int = 0) -> bool:
        """Raise `exc_type` in the task's thread while its own code runs (at a safe point,
        retrying shortly until there is one); False once that code has returned."""
        with self.lock:
            if self.abandoned or not (self.armed or self._not_yet()):
                return False
            raised = self._raise_if_safe(exc_type)
        if not raised:
            self.limits.later(self.interrupt, exc_type, attempt=attempt)
        return True

    def _raise_when_safe(self, exc_type: type[BaseException], *, attempt: int = 0) -> None:
        with self.lock:
            if not self.armed or self._raise_if_safe(exc_type):
                return
        self.limits.later(self._raise_when_safe, exc_type, attempt=attempt)

    def stop(
        self,
        exc_type: type[Interrupt],
        outcome: Outcome,
        signum: int | None = None,
        *,
        attempt: int = 0,
    ) -> bool:
        """End the run now with `outcome`: raise `exc_type` in its thread and, when the pool
        can replace threads, give that thread up and record `outcome` from a new one."""
        pool = self.worker.steps["pool"].pool
        abandon = getattr(pool, "can_replace", False)
        with self.lock:
            if self.abandoned or self.stop_outcome is not None:
                return False
            if not self.armed:
                if not self._not_yet():
                    return False  # its code has returned: let the run end by itself
                self.limits.later(self.stop, exc_type, outcome, signum, attempt=attempt)
                return True
            self.stop_outcome = outcome
            self.signum = signum
            self.abandoned = abandon
            raised = self._raise_if_safe(exc_type)
        if not raised:
            self.limits.later(self._raise_when_safe, exc_type)
        if abandon:
            pool.replace(self.thread, first=lambda: self._finish_abandoned(outcome))
        return True

    def interruption(self, exc: Interrupt) -> Outcome:
        """The outcome `stop` chose (the run's thread raised the injected exception)."""
        return self.stop_outcome or super().interruption(exc)

    def _finish_abandoned(self, outcome: Outcome) -> None:
        """In the replacement thread: record, acknowledge and announce the outcome."""
        with self.lock:
            self.finished = True
        try:
            finish_run(self.task, self.context, outcome)
        except Exception as exc:
            outcome = self._internal_error(exc)
        finally:
            self._cancel_timers()
            self._done(outcome)

    def terminate(self, signum: int | None = None) -> bool:
        """``revoke(terminate=True)``: stop the running task, which ends REVOKED."""
        outcome = Outcome(states.REVOKED, exception=TaskRevokedError("revoked"))
        return self.stop(Terminate, outcome, signum)

    def time_limit_exceeded(self, seconds: float) -> bool:
        """The hard time limit passed: the run fails with `TimeLimitExceeded`."""
        exc = TimeLimitExceeded(seconds)
        outcome = Outcome(states.FAILURE, exception=exc, traceback=format_traceback(exc))
        return self.stop(HardTimeLimit, outcome)

    # introspection -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What ``inspect active``/``reserved`` show (Celery's shape)."""
        headers = self.task_message.headers
        return {
            "id": self.id,
            "name": self.name,
            "args": list(self.task_message.args),
            "kwargs": self.task_message.kwargs,
            "type": self.name,
            "hostname": self.worker.hostname,
            "time_start": self.time_start,
            "acknowledged": self.acknowledged,
            "delivery_info": self.delivery_info,
            "worker_pid": self.worker_pid,
            "argsrepr": headers.get("argsrepr"),
            "kwargsrepr": headers.get("kwargsrepr"),
        }

    def __repr__(self) -> str:
        return f"<Request {self.name}[{self.id}]>"


def signal_number(value: str | int | None) -> int | None:
    """``"SIGTERM"``, ``"TERM"`` or ``15`` as a signal number (what ``task-revoked`` reports)."""
    if value is None or isinstance(value, int):
        return value
    name = str(value).upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None
