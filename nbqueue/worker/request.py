"""One delivered task message in a worker: its fields, its acknowledgement, its run."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from .. import states
from ..execution import Outcome, build_context, run_task
from ..protocol import TaskMessage
from ..task import Task

__all__ = ["Request"]

logger = logging.getLogger(__name__)


class Request:
    """A task message accepted by a worker, from delivery to acknowledgement."""

    __slots__ = (
        "acknowledged",
        "delivery_info",
        "eta",
        "id",
        "message",
        "name",
        "outcome",
        "task",
        "task_message",
        "thread",
        "time_start",
        "worker",
        "worker_pid",
    )

    def __init__(self, worker: Any, message: Any, task_message: TaskMessage, task: Task) -> None:
        self.worker = worker
        self.message = message
        self.task_message = task_message
        self.task = task
        self.id = task_message.id
        self.name = task_message.name
        info = message.delivery_info or {}
        self.delivery_info = {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "priority": message.properties.get("priority"),
            "redelivered": bool(info.get("redelivered") or message.headers.get("redelivered")),
        }
        self.eta = task_message.eta
        self.acknowledged = False
        self.time_start: float | None = None
        self.worker_pid: int | None = None
        self.thread: Any = None
        self.outcome: Outcome | None = None

    # acknowledgement ---------------------------------------------------------------------
    @property
    def acks_late(self) -> bool:
        return bool(self.task.setting("acks_late", "task_acks_late"))

    def ack(self) -> None:
        if not self.acknowledged:
            self.acknowledged = True
            self.message.ack()

    def reject(self, requeue: bool = False) -> None:
        if not self.acknowledged:
            self.acknowledged = True
            self.message.reject(requeue=requeue)

    # expiry ------------------------------------------------------------------------------
    def expired(self, now: datetime | None = None) -> bool:
        expires = self.task_message.expires
        if expires is None:
            return False
        return expires <= (now or datetime.now(timezone.utc))

    # running -----------------------------------------------------------------------------
    def execute(self) -> Outcome:
        """Run the task in the calling (pool) thread, acknowledging early or late."""
        worker = self.worker
        if self.id in worker.state.revoked:  # revoked while it waited in the pool's queue
            worker.discard_revoked(self)
            return Outcome(states.REVOKED)
        self.time_start = time.time()
        worker.state.on_active(self)
        late = self.acks_late
        if not late:
            self.ack()
        worker.on_request_start(self)
        context = build_context(
            self.task, self.task_message, hostname=worker.hostname, delivery_info=self.delivery_info
        )
        outcome = Outcome(states.FAILURE)
        try:
            outcome = run_task(
                self.task, self.task_message, context, run_coroutine=worker.run_coroutine
            )
        finally:
            self.outcome = outcome
            self._settle(outcome, late)
            worker.state.on_done(self, outcome.state)
            worker.on_request_done(self, outcome)
        return outcome

    def _settle(self, outcome: Outcome, late: bool) -> None:
        if outcome.state == states.REJECTED:
            self.reject(requeue=outcome.requeue)
            return
        if (
            late
            and outcome.state == states.FAILURE
            and not self.task.setting(
                "acks_on_failure_or_timeout", "task_acks_on_failure_or_timeout"
            )
        ):
            self.reject(requeue=False)
            return
        self.ack()

    def info(self) -> dict[str, Any]:
        """What ``inspect active``/``reserved`` show (Celery's shape)."""
        headers = self.task_message.headers
        return {
            "id": self.id,
            "name": self.name,
            "args": list(self.task_message.args),
            "kwargs": self.task_message.kwargs,
            "type": self.name,
            "hostname": self.worker.hostname,
            "time_start": self.time_start,
            "acknowledged": self.acknowledged,
            "delivery_info": self.delivery_info,
            "worker_pid": self.worker_pid,
            "argsrepr": headers.get("argsrepr"),
            "kwargsrepr": headers.get("kwargsrepr"),
        }

    def __repr__(self) -> str:
        return f"<Request {self.name}[{self.id}]>"
