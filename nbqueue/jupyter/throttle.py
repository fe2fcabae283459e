"""Coalesce widget updates from background threads: at most `rate` per second, last one kept.

Jupyter Server drops IOPub messages above ~1,000/s and a flooded front end freezes. Every
live widget here funnels its redraws through one `Throttle`: a burst of pokes from pool
threads becomes at most `rate` redraws a second, and the redraw after the last poke always
happens, so a bar always ends on its final value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Throttle"]

logger = logging.getLogger(__name__)


class Throttle:
    """Calls `redraw()` after `poke()`, no more than `rate` times a second.

    A poke inside the quiet interval arms one short-lived timer thread that redraws when
    the interval ends; pokes in between are folded into that one redraw.
    """

    def __init__(
        self,
        redraw: Callable[[], None],
        *,
        rate: float = 20.0,
        name: str = "nbqueue-widget",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redraw = redraw
        self.interval = 1.0 / rate
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._draw_lock = threading.Lock()
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self._closed = False
        #: how many redraws ran (for tests and statistics)
        self.redraws = 0

    def poke(self) -> None:
        """Something changed: redraw now if allowed, else once the interval ends."""
        with self._lock:
            if self._closed or self._timer is not None:
                return  # a redraw is already scheduled and will see this change
            wait = self._last + self.interval - self._clock()
            if wait > 0:
                self._timer = threading.Timer(wait, self._fire)
                self._timer.name = f"{self.name}-flush"
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = self._clock()
        self._draw()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
            self._last = self._clock()
        self._draw()

    def _draw(self) -> None:
        with self._draw_lock:
            try:
                self._redraw()
            except Exception:
                logger.exception("%s: redraw failed", self.name)
            self.redraws += 1

    def flush(self) -> None:
        """Redraw now (cancelling a pending timer): the final value, delivered at once."""
        with self._lock:
            timer, self._timer = self._timer, None
            self._last = self._clock()
        if timer is not None:
            timer.cancel()
        if not self._closed:
            self._draw()

    def close(self, timeout: float = 5.0) -> None:
        """Stop redrawing; a pending timer is cancelled and joined."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(timeout)
