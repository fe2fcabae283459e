"""Every error nbqueue raises, under one root.

::

    NbqueueError
    ├── ConfigurationError          an unknown or invalid setting
    ├── NotRegistered               a message names a task this app does not know
    ├── ContentDisallowed           a content type the app does not accept
    ├── SecurityError               an unsigned or wrongly signed pickle
    ├── DecodeError                 a message body that cannot be decoded
    ├── ProtocolError               a message that is not Celery protocol v1/v2
    ├── BrokerError                 the broker is unreachable (also kombu's OperationalError)
    ├── BackendError                the result backend failed
    ├── TimeoutError                `AsyncResult.get` gave up waiting (also a builtins.TimeoutError)
    ├── TaskError                   raised *about* a task's run
    │   ├── TaskRevokedError        the task was revoked or expired
    │   ├── TimeLimitExceeded       the hard time limit killed the task
    │   ├── ChordError              a chord's header task failed
    │   ├── MaxRetriesExceededError
    │   └── WorkerLostError         the process running the task died
    ├── ImproperlyStarted           a worker used before `start()` or after `stop()`
    ├── RemoteTraceback             the traceback where a task ran (the `__cause__` on re-raise)
    ├── BootstepError               a bootstep failed (names the step)
    │   └── DependencyError         an unknown bootstep dependency or a cycle
    └── TaskControlFlow             raised *inside* a task to steer the worker
        ├── Retry                   retry the task later
        ├── Reject                  reject (and maybe requeue) the message
        └── Ignore                  do not record a state for this run

``SoftTimeLimitExceeded`` is raised inside the task's own thread; it derives from
`NbqueueError` directly so that ``except Exception`` in task code can still catch it.
Names follow Celery's wherever Celery has one.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from kombu.exceptions import OperationalError

__all__ = [
    "BackendError",
    "BootstepError",
    "BrokerError",
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "DecodeError",
    "DependencyError",
    "Ignore",
    "ImproperlyStarted",
    "MaxRetriesExceededError",
    "NbqueueError",
    "NotRegistered",
    "ProtocolError",
    "Reject",
    "RemoteTraceback",
    "Retry",
    "SecurityError",
    "SoftTimeLimitExceeded",
    "TaskControlFlow",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]


class NbqueueError(Exception):
    """Root of every exception nbqueue raises."""


class ConfigurationError(NbqueueError):
    """An unknown or invalid setting."""


class NotRegistered(NbqueueError, KeyError):
    """A task name that the app has no task for."""

    def __str__(self) -> str:
        return f"task {self.args[0]!r} is not registered" if self.args else "not registered"


class ContentDisallowed(NbqueueError):
    """A message whose content type is not in ``accept_content``."""


class SecurityError(NbqueueError):
    """A pickled payload that is unsigned or signed with another key."""


class DecodeError(NbqueueError):
    """A message body that cannot be decoded."""


class ProtocolError(NbqueueError):
    """A message that is neither Celery protocol v1 nor v2."""


class BrokerError(NbqueueError, OperationalError):
    """The broker cannot be reached or refused an operation.

    Also a ``kombu.exceptions.OperationalError``, what Celery's ``apply_async`` raises, so
    ``except OperationalError`` written for Celery catches it too.
    """


class BackendError(NbqueueError):
    """The result backend cannot be reached or refused an operation."""


class TimeoutError(NbqueueError, builtins.TimeoutError):
    """Waiting for a result took longer than the timeout."""


class TaskError(NbqueueError):
    """Base for errors that describe what happened to a task's run."""


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) before it could finish."""


class TimeLimitExceeded(TaskError):
    """The task ran past its hard time limit and was abandoned or killed."""


class ChordError(TaskError):
    """A task in a chord's header failed, so the body cannot run."""


class MaxRetriesExceededError(TaskError):
    """``self.retry()`` was called more than ``max_retries`` times."""


class WorkerLostError(TaskError):
    """The worker process running the task exited unexpectedly."""


class ImproperlyStarted(NbqueueError):
    """A worker used before ``start()`` or after ``stop()``."""


class BootstepError(NbqueueError):
    """A bootstep failed to start or stop; the message names the step."""


class DependencyError(BootstepError):
    """A bootstep requires an unknown step, or the requirements form a cycle."""


class SoftTimeLimitExceeded(NbqueueError):
    """Raised inside a task's thread when its soft time limit passes."""


class TaskControlFlow(NbqueueError):
    """Base for exceptions a task raises to steer the worker, not to fail."""


class Retry(TaskControlFlow):
    """The task asked to be retried (raised by ``Task.retry``)."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | datetime | None = None,
        **kwargs: Any,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        super().__init__(message, exc, when, **kwargs)

    def humanize(self) -> str:
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __str__(self) -> str:
        if self.message:
            return self.message
        if self.exc is not None:
            return f"Retry {self.humanize()}: {self.exc!r}"
        return f"Retry {self.humanize()}"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.message, self.exc, self.when)


class Reject(TaskControlFlow):
    """Reject the message; requeue it when ``requeue`` is true."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)

    def __repr__(self) -> str:
        return f"Reject(reason={self.reason!r}, requeue={self.requeue})"


class Ignore(TaskControlFlow):
    """Leave the task's state as it is and do not store a result."""


class RemoteTraceback(NbqueueError):
    """Carries a traceback formatted where the task ran; set as ``__cause__`` on re-raise."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'
