"""Hub: the loop thread that drives the broker connection."""

from __future__ import annotations

from typing import Any

from ...bootsteps import Step
from ..loop import Loop

__all__ = ["Hub"]


class Hub(Step):
    """Owns the worker's `Loop` thread (``nbqueue-<worker>-hub``)."""

    requires = ("timer",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.loop = Loop(f"nbqueue-{worker.hostname}-hub")

    def start(self, worker: Any) -> None:
        self.loop.start()

    def stop(self, worker: Any) -> None:
        self.loop.stop()

    def info(self) -> dict[str, Any]:
        return {"running": self.loop.is_running()}
