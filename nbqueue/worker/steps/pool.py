"""Pool: the threads (or the solo loop) that run tasks."""

from __future__ import annotations

import logging
from typing import Any

from ...bootsteps import Step
from ..pools import AsyncioThread, pool_class
from ..processes import ProcessPool

__all__ = ["Pool"]

logger = logging.getLogger(__name__)


class Pool(Step):
    """Creates the pool chosen by the worker's ``pool`` option (threads, solo, processes)."""

    requires = ("hub",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        name, size = f"nbqueue-{worker.hostname}-pool", worker.options.concurrency
        if worker.options.pool == "processes":
            self.pool: Any = ProcessPool(name, size, worker=worker)
        else:
            self.pool = pool_class(worker.options.pool)(name, size)
        self.asyncio = AsyncioThread(f"nbqueue-{worker.hostname}-asyncio")

    def start(self, worker: Any) -> None:
        self.pool.start()

    def stop(self, worker: Any) -> None:
        # a cold shutdown abandons running tasks: their (daemon) threads are not waited for
        alive = self.pool.stop(timeout=0 if worker.cold else worker.options.shutdown_timeout)
        self.asyncio.stop()
        if alive:
            logger.warning("%s: pool threads still running after stop: %s", worker.hostname, alive)

    def info(self) -> dict[str, Any]:
        return self.pool.info()
