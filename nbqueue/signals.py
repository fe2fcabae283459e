"""Per-app signals with Celery's names; a failing receiver is logged, never raised."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SIGNAL_NAMES", "Signal", "Signals"]

logger = logging.getLogger(__name__)

SIGNAL_NAMES = (
    "before_task_publish",
    "after_task_publish",
    "task_received",
    "task_prerun",
    "task_postrun",
    "task_success",
    "task_failure",
    "task_retry",
    "task_revoked",
    "task_unknown",
    "task_rejected",
    "task_internal_error",
    "worker_init",
    "worker_ready",
    "worker_shutting_down",
    "worker_shutdown",
    "heartbeat_sent",
)

Receiver = Callable[..., Any]


class Signal:
    """A list of receivers called as ``receiver(sender=..., **kwargs)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: tuple[Receiver, ...] = ()
        self._lock = threading.Lock()

    def connect(self, receiver: Receiver | None = None) -> Any:
        """Add `receiver`; usable as a decorator."""
        if receiver is None:
            return self.connect
        with self._lock:
            if receiver not in self._receivers:
                self._receivers = (*self._receivers, receiver)
        return receiver

    def disconnect(self, receiver: Receiver) -> None:
        with self._lock:
            self._receivers = tuple(r for r in self._receivers if r != receiver)

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        return self._receivers

    def send(self, sender: Any = None, **kwargs: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver; an exception in one is logged and the rest still run."""
        responses = []
        for receiver in self._receivers:
            try:
                responses.append((receiver, receiver(sender=sender, signal=self, **kwargs)))
            except Exception as exc:
                logger.exception("signal %s: receiver %r raised %r", self.name, receiver, exc)
                responses.append((receiver, exc))
        return responses

    def __bool__(self) -> bool:
        return bool(self._receivers)

    def __repr__(self) -> str:
        return f"<Signal {self.name}: {len(self._receivers)} receivers>"


class Signals:
    """The signals of one app: ``app.signals.task_success.connect(fn)``."""

    def __init__(self) -> None:
        for name in SIGNAL_NAMES:
            setattr(self, name, Signal(name))

    def __getitem__(self, name: str) -> Signal:
        if name not in SIGNAL_NAMES:
            raise KeyError(f"no signal named {name!r}")
        return getattr(self, name)

    def __getattr__(self, name: str) -> Signal:  # only reached for unknown names
        raise AttributeError(f"no signal named {name!r}; known: {', '.join(SIGNAL_NAMES)}")
