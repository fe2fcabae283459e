"""Autoscaler: grows the pool under a backlog, shrinks it when idle (``autoscale=(max, min)``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ...bootsteps import Step

__all__ = ["Autoscaler"]

logger = logging.getLogger(__name__)


class Autoscaler(Step):
    """Resizes the pool between ``min`` and ``max`` on a timer tick (Celery's ``--autoscale``).

    Each `tick` grows the pool at once to the number of requests reserved or running (at
    most ``max``), and shrinks it back to ``min`` once the worker has had nothing to do for
    ``keepalive`` seconds. Disabled unless the worker was given ``autoscale=(max, min)``.

    Parameters
    ----------
    interval:
        Seconds between ticks on the worker's timer.
    keepalive:
        Seconds of idleness before the pool shrinks (Celery's ``AUTOSCALE_KEEPALIVE``).
    clock:
        A monotonic clock; tests pass their own and call `tick` directly.
    """

    requires = ("timer", "pool")

    def __init__(
        self,
        worker: Any,
        *,
        interval: float = 1.0,
        keepalive: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(worker, interval=interval, keepalive=keepalive, clock=clock)
        bounds = worker.options.autoscale or (1, 1)
        self.max_concurrency, self.min_concurrency = _checked(int(bounds[0]), int(bounds[1]))
        self.interval = interval
        self.keepalive = keepalive
        self.clock = clock
        self.scaled_up = 0
        self.scaled_down = 0
        self._lock = threading.Lock()
        self._last_active = clock()
        self._seen_processed = 0
        self._entry: Any = None

    def include(self, worker: Any) -> bool:
        return worker.options.autoscale is not None

    def start(self, worker: Any) -> None:
        with self._lock:
            self._last_active = self.clock()
        self._entry = worker.steps["timer"].timer.call_repeatedly(self.interval, self.tick)

    def stop(self, worker: Any) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.cancel()

    @property
    def pool(self) -> Any:
        return self.parent.steps["pool"].pool

    @property
    def qty(self) -> int:
        """Requests this worker holds: reserved (waiting for a slot) or running."""
        state = self.parent.state
        return len(state.reserved) + len(state.active)

    def tick(self) -> int:
        """Grow or shrink once, as the backlog asks; returns the change in pool size."""
        with self._lock:
            now = self.clock()
            qty = self.qty
            processed = self.parent.state.processed
            if qty or processed != self._seen_processed:
                self._last_active = now
                self._seen_processed = processed
            size = self.pool.size
            wanted = min(qty, self.max_concurrency)
            if wanted > size:
                self._last_active = now
                return self._grow(wanted - size)
            wanted = max(qty, self.min_concurrency)
            if wanted < size and now - self._last_active >= self.keepalive:
                return -self._shrink(size - wanted)
            return 0

    def update(self, max: int | None = None, min: int | None = None) -> tuple[int, int]:
        """New bounds (the ``autoscale`` control command); resizes at once if outside them."""
        with self._lock:
            new_max = self.max_concurrency if max is None else int(max)
            new_min = self.min_concurrency if min is None else int(min)
            new_max, new_min = _checked(new_max, new_min)
            size = self.pool.size
            if size > new_max:
                self._shrink(size - new_max)
            elif size < new_min:
                self._grow(new_min - size)
            self.max_concurrency, self.min_concurrency = new_max, new_min
        self.parent.steps["tasks"].set_concurrency(new_max)
        return new_max, new_min

    def _grow(self, n: int) -> int:
        logger.info("%s: scaling up %d pool slot(s)", self.parent.hostname, n)
        self.pool.grow(n)
        self.scaled_up += n
        return n

    def _shrink(self, n: int) -> int:
        logger.info("%s: scaling down %d pool slot(s)", self.parent.hostname, n)
        self.pool.shrink(n)
        self.scaled_down += n
        return n

    def info(self) -> dict[str, Any]:
        """Celery's autoscaler stats: ``{"max", "min", "current", "qty"}``."""
        return {
            "max": self.max_concurrency,
            "min": self.min_concurrency,
            "current": self.pool.size,
            "qty": self.qty,
        }


def _checked(maximum: int, minimum: int) -> tuple[int, int]:
    """Bounds a thread pool can follow: at least one slot, ``min <= max``."""
    minimum = max(minimum, 1)
    if maximum < minimum:
        raise ValueError(f"autoscale max ({maximum}) is below min ({minimum})")
    return maximum, minimum
