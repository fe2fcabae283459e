"""What one worker knows: its requests (reserved, active, scheduled), revoked ids, totals."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["LimitedSet", "WorkerState"]


class LimitedSet:
    """A set that forgets entries after `expires` seconds or beyond `maxlen` (oldest first)."""

    def __init__(self, maxlen: int = 50_000, expires: float = 10_800.0, clock: Any = time.time):
        self.maxlen = maxlen
        self.expires = expires
        self._clock = clock
        self._data: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, item: str, now: float | None = None) -> None:
        with self._lock:
            self._data.pop(item, None)
            self._data[item] = self._clock() if now is None else now
            self._purge()

    def update(self, items: Iterable[str]) -> None:
        for item in items:
            self.add(item)

    def discard(self, item: str) -> None:
        with self._lock:
            self._data.pop(item, None)

    def _purge(self) -> None:
        while len(self._data) > self.maxlen:
            self._data.popitem(last=False)
        if self.expires:
            horizon = self._clock() - self.expires
            while self._data:
                first, stamp = next(iter(self._data.items()))
                if stamp >= horizon:
                    break
                del self._data[first]

    def __contains__(self, item: object) -> bool:
        if item not in self._data:
            return False
        with self._lock:
            self._purge()
        return item in self._data

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            self._purge()
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def as_list(self) -> list[str]:
        """Ids, oldest first (what Mingle sends)."""
        return list(self)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return dict(self._data)


class WorkerState:
    """Per-worker bookkeeping; several workers in one process never share it."""

    def __init__(self) -> None:
        self.reserved: dict[str, Any] = {}
        self.active: dict[str, Any] = {}
        self.scheduled: dict[str, Any] = {}
        self.revoked = LimitedSet()
        self.total: Counter[str] = Counter()
        self.processed = 0
        self.succeeded = 0
        self.failed = 0
        self.started_at = time.time()
        self.version = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiting = 0

    def _bump(self) -> None:
        """Record a change (called with the lock held) and wake waiters, if any."""
        self.version += 1
        if self._waiting:
            self._changed.notify_all()

    def on_reserved(self, request: Any) -> None:
        with self._lock:
            self.reserved[request.id] = request
            self._bump()

    def on_scheduled(self, request: Any) -> None:
        with self._lock:
            self.scheduled[request.id] = request
            self._bump()

    def on_unscheduled(self, request: Any) -> None:
        with self._lock:
            self.scheduled.pop(request.id, None)
            self._bump()

    def on_active(self, request: Any) -> None:
        with self._lock:
            self.reserved.pop(request.id, None)
            self.active[request.id] = request

    def on_done(self, request: Any, state: str) -> None:
        with self._lock:
            self.active.pop(request.id, None)
            self.reserved.pop(request.id, None)
            self.processed += 1
            self.total[request.name] += 1
            if state == "SUCCESS":
                self.succeeded += 1
            elif state == "FAILURE":
                self.failed += 1
            self._bump()

    def on_dropped(self, request: Any) -> None:
        """A request that will not run here (revoked, expired, requeued)."""
        with self._lock:
            self.reserved.pop(request.id, None)
            self.scheduled.pop(request.id, None)
            self.active.pop(request.id, None)
            self._bump()

    def busy(self) -> bool:
        return bool(self.active or self.reserved)

    def wake(self) -> None:
        """Wake every waiter so it re-checks its condition (e.g. a cold shutdown began)."""
        with self._lock:
            self._bump()

    def wait_idle(self, timeout: float | None, abort: Any = None) -> bool:
        """Wait until nothing is reserved or active; False on timeout or when `abort()` is true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self.active or self.reserved:
                if abort is not None and abort():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._wait(remaining)
        return True

    def _wait(self, timeout: float | None) -> None:
        self._waiting += 1
        try:
            self._changed.wait(timeout)
        finally:
            self._waiting -= 1

    def wait_change(self, seen: int, timeout: float | None) -> None:
        """Wait until something changed since `seen` (``state.version``), or `timeout`."""
        with self._lock:
            if self.version == seen:
                self._wait(timeout)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "active": len(self.active),
                "reserved": len(self.reserved),
                "scheduled": len(self.scheduled),
                "processed": self.processed,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "total": dict(self.total),
            }
