"""The in-process result backend: a dict, and waiters woken the moment a result lands."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from .base import Backend

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend):
    """Results kept as Python objects in this process, expiring after ``result_expires``.

    A waiter blocks on an event of its own task id (no polling, no thundering herd);
    every stored state wakes it, so progress states are seen as they happen.
    """

    keeps_objects = True

    def __init__(self, app: Any, url: str = "memory://") -> None:
        super().__init__(app, url)
        self._lock = threading.RLock()
        self._data: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._writes = 0
        self._chords: dict[str, tuple[int, dict[str, tuple[float, str, str, Any]]]] = {}

    def store_result(self, task_id: str, result: Any, state: str, **kwargs: Any) -> dict[str, Any]:
        with self._lock:  # the read-check-write of the SUCCESS rule is atomic here
            return super().store_result(task_id, result, state, **kwargs)

    def _get(self, task_id: str) -> dict[str, Any] | None:
        entry = self._data.get(task_id)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._data.pop(task_id, None)
            return None
        return entry[1]

    def _set(self, task_id: str, meta: dict[str, Any], state: str) -> None:
        ttl = self.app.conf.result_expires_seconds()
        expires = float("inf") if not ttl else time.monotonic() + ttl
        with self._lock:
            self._data.pop(task_id, None)  # re-insert: the dict stays ordered by expiry
            self._data[task_id] = (expires, meta)
            waiters = self._waiters.pop(task_id, None)
            self._writes += 1
            if self._writes % 1024 == 0:
                self._expire()
        for event in waiters or ():
            event.set()

    def _expire(self) -> None:
        now = time.monotonic()
        while self._data:
            task_id, (expires, _) = next(iter(self._data.items()))
            if expires >= now:
                return
            del self._data[task_id]

    def _delete(self, task_id: str) -> None:
        with self._lock:
            self._data.pop(task_id, None)

    def _wait(
        self, task_id: str, timeout: float | None, seen: dict[str, Any]
    ) -> dict[str, Any] | None:
        with self._lock:
            current = self._get(task_id)
            if current is not None and current is not seen:
                return current
            event = threading.Event()
            self._waiters.setdefault(task_id, []).append(event)
        event.wait(timeout)
        with self._lock:
            waiters = self._waiters.get(task_id)
            if waiters and event in waiters:
                waiters.remove(event)
                if not waiters:
                    del self._waiters[task_id]
            current = self._get(task_id)
        return None if current is None or current is seen else current

    def set_chord_size(self, group_id: str, size: int) -> None:
        with self._lock:
            self._chords[group_id] = (size, {})

    def add_chord_part(
        self, group_id: str, task_id: str, index: int | None, state: str, value: Any
    ) -> list[tuple[str, str, Any]] | None:
        with self._lock:
            entry = self._chords.get(group_id)
            if entry is None:
                return None
            size, parts = entry
            order = float("inf") if index is None else float(index)
            parts.setdefault(task_id, (order, task_id, state, value))
            if len(parts) < size:
                return None
            del self._chords[group_id]
        return [(tid, st, val) for _, tid, st, val in sorted(parts.values(), key=lambda p: p[0])]

    def __len__(self) -> int:
        return len(self._data)
