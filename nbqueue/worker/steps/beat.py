"""Beat: the embedded periodic scheduler, on a thread of its own (``beat=True``)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ...beat import Scheduler
from ...beat.scheduler import Clock
from ...bootsteps import Step

__all__ = ["Beat"]

logger = logging.getLogger(__name__)


class Beat(Step):
    """Sends ``beat_schedule`` entries when due, from ``nbqueue-<worker>-beat``.

    Its own thread rather than the Timer's: sending may wait on the broker, and ETA tasks
    must not wait behind it. ``clock`` and ``max_interval`` go to the `Scheduler`.
    """

    def __init__(
        self, worker: Any, *, clock: Clock | None = None, max_interval: float | None = None
    ) -> None:
        super().__init__(worker, clock=clock, max_interval=max_interval)
        self.clock = clock
        self.max_interval = max_interval
        self.scheduler: Scheduler | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def include(self, worker: Any) -> bool:
        return bool(worker.options.beat)

    def start(self, worker: Any) -> None:
        self.scheduler = Scheduler(worker.app, clock=self.clock, max_interval=self.max_interval)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(self.scheduler,), name=f"nbqueue-{worker.hostname}-beat"
        )
        self._thread.daemon = True
        self._thread.start()

    def _run(self, scheduler: Scheduler) -> None:
        while not self._stopping.is_set():
            try:
                wait = scheduler.tick()
            except Exception:
                logger.exception("%s: beat tick failed", self.parent.hostname)
                wait = scheduler.max_interval
            self._stopping.wait(wait)

    def stop(self, worker: Any) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5.0)
            if thread.is_alive():
                logger.warning("%s: beat thread still running after stop", worker.hostname)

    def info(self) -> dict[str, Any]:
        scheduler = self.scheduler
        if scheduler is None:
            return {"sent": 0, "entries": {}}
        return {"sent": scheduler.sent, "entries": scheduler.info()}
