"""Consumer: the last worker step, itself a blueprint of consumer steps."""

from __future__ import annotations

from typing import Any

from ...bootsteps import Blueprint, Step

__all__ = ["Consumer"]


class Consumer(Step):
    """Starts the consumer blueprint (connection, tasks, control, ...) once the rest runs."""

    last = True

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        from . import consumer_steps

        steps = [*consumer_steps(), *worker.app.steps["consumer"]]
        self.blueprint = Blueprint("consumer", steps).apply(worker)

    def start(self, worker: Any) -> None:
        self.blueprint.start(worker)

    def stop(self, worker: Any) -> None:
        self.blueprint.stop(worker)
