"""A timer thread over kombu's timer heap: ETA tasks and periodic callbacks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kombu.asynchronous.timer import Entry, Timer

__all__ = ["ThreadTimer"]

logger = logging.getLogger(__name__)


class ThreadTimer:
    """kombu's `Timer` heap, driven by one named thread; callbacks run in that thread.

    Callbacks must be quick (hand work to the pool). Scheduling is thread-safe and wakes
    the thread when the new entry is due sooner than what it is waiting for.
    """

    def __init__(self, name: str, max_interval: float = 1.0) -> None:
        self.name = name
        self._timer = Timer(max_interval=max_interval, on_error=self._on_error)
        self._cond = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._stopping = False

    @staticmethod
    def _on_error(exc: BaseException) -> None:
        logger.error("timer callback raised %r", exc, exc_info=exc)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        schedule = iter(self._timer)
        with self._cond:
            while not self._stopping:
                delay, entry = next(schedule)
                if entry is not None:
                    self._timer.apply_entry(entry)  # under the lock: heap pushes stay ordered
                    continue
                self._cond.wait(delay)

    def _schedule(self, add: Callable[[], Entry]) -> Entry:
        with self._cond:
            entry = add()
            self._cond.notify()
        return entry

    def call_at(self, eta: datetime | float, fun: Callable[..., Any], *args: Any) -> Entry:
        """Call ``fun(*args)`` at `eta` (a datetime, or a ``time.monotonic()`` value)."""
        return self._schedule(lambda: self._timer.call_at(eta, fun, args))

    def call_after(self, seconds: float, fun: Callable[..., Any], *args: Any) -> Entry:
        return self._schedule(lambda: self._timer.call_after(seconds, fun, args))

    def call_repeatedly(self, seconds: float, fun: Callable[..., Any], *args: Any) -> Entry:
        return self._schedule(lambda: self._timer.call_repeatedly(seconds, fun, args))

    def cancel(self, entry: Entry) -> None:
        entry.cancel()

    def __len__(self) -> int:
        return len(self._timer)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; returns False if it did not exit within `timeout`."""
        with self._cond:
            self._stopping = True
            self._timer.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True
