"""Tasks: the task consumer, with Celery's prefetch (QoS) rules."""

from __future__ import annotations

import logging
from typing import Any

from kombu import Consumer

from ...bootsteps import Step
from ..strategy import TaskHandler

__all__ = ["Tasks"]

logger = logging.getLogger(__name__)


class Tasks(Step):
    """Consumes the worker's queues; prefetch = concurrency × ``worker_prefetch_multiplier``.

    ETA tasks held on the timer raise the prefetch limit by one each (as Celery does), so
    they never starve the queue.
    """

    requires = ("mingle",)  # Celery's edge: revoked ids are synced before tasks arrive

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.handler = TaskHandler(worker)
        self.consumer: Consumer | None = None
        self.channel: Any = None
        self.extra_prefetch = 0
        #: pool slots the prefetch is sized for: the autoscaler's max when autoscaling
        self.concurrency = (worker.options.autoscale or (worker.options.concurrency,))[0]

    @property
    def prefetch_count(self) -> int:
        """The QoS limit (0 = unlimited), including room for held ETA tasks."""
        base = self.concurrency * self.parent.options.prefetch_multiplier
        return base + self.extra_prefetch if base else 0

    def set_concurrency(self, slots: int) -> None:
        """Size the prefetch for `slots` pool slots (autoscaler bounds, pool grow/shrink)."""
        self.concurrency = slots
        self.update_qos(0)

    def start(self, worker: Any) -> None:
        worker.steps["hub"].loop.run_sync(self._consume, worker)

    def _consume(self, worker: Any) -> None:
        conn = worker.steps["connection"].connection
        self.channel = conn.channel()
        self.channel.basic_qos(0, self.prefetch_count, False)
        queues = [q.bind(self.channel) for q in worker.consume_from()]
        self.consumer = Consumer(
            self.channel, queues=queues, on_message=self.handler.on_message, no_ack=False
        )
        self.consumer.consume()

    def add_queue(self, queue: Any) -> None:
        """Consume one more queue, in the loop thread."""

        def add() -> None:
            if self.consumer is None:
                return
            self.consumer.add_queue(queue.bind(self.channel))
            self.consumer.consume()

        self.parent.steps["hub"].loop.run_sync(add)

    def cancel_queue(self, name: str) -> None:
        """Stop consuming the queue called `name`, in the loop thread."""
        if self.consumer is not None:
            self.parent.steps["hub"].loop.run_sync(self.consumer.cancel_by_queue, name)

    def update_qos(self, delta: int) -> None:
        """Grow (or shrink) the prefetch limit; applied in the loop thread."""
        self.extra_prefetch = max(0, self.extra_prefetch + delta)
        channel = self.channel
        if channel is not None:
            self.parent.steps["hub"].loop.call_soon(
                lambda: channel.basic_qos(0, self.prefetch_count, False)
            )

    def active_queues(self) -> list[Any]:
        return list(self.consumer.queues) if self.consumer is not None else []

    def stop(self, worker: Any) -> None:
        loop = worker.steps["hub"].loop
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            loop.run_sync(consumer.cancel)
        worker.return_unstarted()
        waited = worker.state.wait_idle(worker.options.shutdown_timeout, abort=lambda: worker.cold)
        if not waited:
            logger.warning(
                "%s: abandoning running tasks (%s); their unacked messages are restored",
                worker.hostname,
                "cold shutdown" if worker.cold else "shutdown timeout",
            )
        channel, self.channel = self.channel, None
        self.extra_prefetch = 0
        if channel is not None:
            loop.run_sync(channel.close)

    def info(self) -> dict[str, Any]:
        return {
            "prefetch_count": self.prefetch_count,
            "queues": [q.name for q in self.active_queues()],
        }
