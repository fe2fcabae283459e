"""Timer: one thread that fires ETA tasks and periodic callbacks on time."""

from __future__ import annotations

from typing import Any

from ...bootsteps import Step
from ..timer import ThreadTimer

__all__ = ["Timer"]


class Timer(Step):
    """Owns the worker's `ThreadTimer` (``nbqueue-<worker>-timer``)."""

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.timer = ThreadTimer(f"nbqueue-{worker.hostname}-timer")

    def start(self, worker: Any) -> None:
        self.timer.start()

    def stop(self, worker: Any) -> None:
        self.timer.stop()

    def info(self) -> dict[str, Any]:
        return {"entries": len(self.timer)}
