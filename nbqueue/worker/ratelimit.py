"""Rate limits per task type per worker: ``"10/s"``, ``"100/m"``, ``"1000/h"``.

Each limited task type has a token bucket of capacity 1 (as Celery's). A request that
finds no token waits in its bucket — held in memory, its message still unacknowledged —
and the worker's timer releases it when a token is due. The consumer never blocks and no
pool thread waits, so other task types keep flowing; and every held message raises the
prefetch limit by one (as ETA tasks do), so held messages never use up the room the
consumer has for the others.

Task types without a limit cost one dict lookup per message.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from time import monotonic
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["RateLimits", "parse_rate"]

logger = logging.getLogger(__name__)

_PER_SECOND = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str | float | None) -> float:
    """Tokens per second for ``"10/s"``, ``"100/m"``, ``"1000/h"`` or a number (per second).

    0 or None means no limit. Anything else raises `ConfigurationError`.
    """
    if value is None or value == "":
        return 0.0
    if isinstance(value, (int, float)):
        return max(float(value), 0.0)
    count, _, unit = str(value).strip().partition("/")
    try:
        return max(float(count), 0.0) / _PER_SECOND[unit.strip() or "s"]
    except (KeyError, ValueError):
        raise ConfigurationError(
            f"rate limit {value!r} is not like '10/s', '100/m' or '1000/h'"
        ) from None


class _Bucket:
    """One task type's schedule of tokens and the requests waiting for them.

    A token bucket of capacity 1 (as Celery's), kept as the time the next token is due:
    a request released on schedule moves that time on by one interval from when it was
    *due*, not from when the timer got round to it, so a late timer never lowers the rate
    (kombu's `TokenBucket` caps what a late timer would have refilled, and 100/s ran at
    ~72/s under load).
    """

    __slots__ = ("held", "interval", "name", "next_at", "rate", "timer_due")

    def __init__(self, name: str, rate: float) -> None:
        self.name = name
        self.next_at = 0.0
        self.set_rate(rate)
        self.held: deque[Any] = deque()
        self.timer_due = False

    def set_rate(self, rate: float) -> None:
        """A new rate; a token due later than one new interval from now is due sooner."""
        self.rate = rate
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = min(self.next_at, monotonic() + self.interval)

    def take(self, now: float, *, on_schedule: bool) -> bool:
        """Use the token if one is due at `now`."""
        if now < self.next_at:
            return False
        if on_schedule:  # catch up a late timer, by at most one interval
            self.next_at = max(self.next_at, now - self.interval) + self.interval
        else:
            self.next_at = now + self.interval
        return True


class RateLimits:
    """The buckets of one worker's task types, and the requests they hold."""

    def __init__(self, worker: Any, release: Any) -> None:
        self.worker = worker
        #: ``release(request)`` sends a request on to the pool
        self._release = release
        self._lock = threading.Lock()
        #: task name -> (task object the entry was made for, bucket or None)
        self._entries: dict[str, tuple[Any, _Bucket | None]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self.held = 0

    # the hot path ---------------------------------------------------------------------
    def bucket_for(self, request: Any) -> _Bucket | None:
        """The bucket of `request`'s task type, or None when it has no rate limit."""
        entry = self._entries.get(request.name)
        if entry is not None and entry[0] is request.task:
            return entry[1]
        return self._refresh(request.name, request.task)

    def submit(self, bucket: _Bucket, request: Any) -> None:
        """Send `request` on now if a token is free, else hold it until one is."""
        with self._lock:
            if not bucket.held and bucket.take(monotonic(), on_schedule=False):
                ready = True
            else:
                ready = False
                bucket.held.append(request)
                self.held += 1
                self._schedule(bucket)
        if ready:
            self._release(request)
        else:
            self._update_qos(+1)

    # timer ----------------------------------------------------------------------------
    def _schedule(self, bucket: _Bucket) -> None:
        """(lock held) Make sure a timer entry will release `bucket`'s next request."""
        if bucket.timer_due or not bucket.held:
            return
        bucket.timer_due = True
        delay = max(0.0, bucket.next_at - monotonic())
        self.worker.steps["timer"].timer.call_after(delay, self._on_timer, bucket)

    def _on_timer(self, bucket: _Bucket) -> None:
        with self._lock:
            bucket.timer_due = False
            ready = self._take_ready(bucket)
            self._schedule(bucket)
        self._send(ready)

    def _take_ready(self, bucket: _Bucket) -> list[Any]:
        """(lock held) The held requests that may go now, oldest first."""
        ready = []
        now = monotonic()
        while bucket.held and (not bucket.rate or bucket.take(now, on_schedule=True)):
            ready.append(bucket.held.popleft())
        self.held -= len(ready)
        return ready

    def _send(self, ready: list[Any]) -> None:
        if not ready:
            return
        self._update_qos(-len(ready))
        for request in ready:
            try:
                self._release(request)
            except Exception:
                logger.exception("%s: could not release %r", self.worker.hostname, request)

    def _update_qos(self, delta: int) -> None:
        self.worker.steps["tasks"].update_qos(delta)

    # configuration ----------------------------------------------------------------------
    def rate_of(self, name: str, task: Any) -> float:
        """The rate (tokens/s) in force for task `name` on this worker; 0 means none."""
        conf = self.worker.app.conf
        if conf.worker_disable_rate_limits:
            return 0.0
        overrides = self.worker.rate_limits
        if name in overrides:
            return parse_rate(overrides[name])
        rate = task.rate_limit if task.rate_limit is not None else conf.task_default_rate_limit
        return parse_rate(rate)

    def _refresh(self, name: str, task: Any) -> _Bucket | None:
        """Look the rate up again (first message, new task code, or a changed limit)."""
        try:
            rate = self.rate_of(name, task)
        except ConfigurationError as exc:
            logger.error("%s: %s; %s runs without a rate limit", self.worker.hostname, exc, name)
            rate = 0.0
        with self._lock:
            bucket = self._buckets.get(name)
            if rate and bucket is None:
                bucket = self._buckets[name] = _Bucket(name, rate)
            ready = []
            if bucket is not None:
                bucket.set_rate(rate)
                ready = self._take_ready(bucket) if not rate else []
            self._entries[name] = (task, bucket if rate else None)
        self._send(ready)
        return bucket if rate else None

    def changed(self, name: str) -> None:
        """The limit of `name` changed: apply it now, to held requests too."""
        task = self.worker.app.tasks.get(name)
        if task is not None:
            self._refresh(name, task)
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is not None and bucket.held:
                bucket.timer_due = False  # the old entry may be far off: schedule anew
                self._schedule(bucket)

    def flush(self) -> list[Any]:
        """Take back every held request (oldest first), e.g. to return them at a stop."""
        with self._lock:
            requests = [r for bucket in self._buckets.values() for r in bucket.held]
            for bucket in self._buckets.values():
                bucket.held.clear()
            self.held = 0
        if requests:
            self._update_qos(-len(requests))
        return requests

    def held_ids(self) -> list[str]:
        with self._lock:
            return [r.id for bucket in self._buckets.values() for r in bucket.held]

    def info(self) -> dict[str, Any]:
        """Rates in force and how many requests each bucket holds."""
        with self._lock:
            return {
                name: {"rate_per_s": b.rate, "held": len(b.held)}
                for name, b in self._buckets.items()
                if b.rate or b.held
            }
