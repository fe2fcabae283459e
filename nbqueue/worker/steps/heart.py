"""Heart: tells the cluster this worker is alive (worker-online, -heartbeat, -offline)."""

from __future__ import annotations

import logging
from typing import Any

from ...bootsteps import Step
from ...events import load_average

__all__ = ["Heart"]

logger = logging.getLogger(__name__)


class Heart(Step):
    """Sends ``worker-online`` at start, ``worker-heartbeat`` every ``heartbeat_interval``
    seconds on the worker's timer, and ``worker-offline`` at stop."""

    requires = ("events",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.interval = float(worker.options.heartbeat_interval)
        self.sent = 0
        self._entry: Any = None

    def include(self, worker: Any) -> bool:
        return not worker.options.without_heartbeat

    def start(self, worker: Any) -> None:
        self._send("worker-online")
        self._entry = worker.steps["timer"].timer.call_repeatedly(
            self.interval, self._send, "worker-heartbeat"
        )

    def _send(self, type_: str) -> None:
        worker = self.parent
        signal = worker.app.signals.heartbeat_sent
        if signal:
            signal.send(sender=self)
        events = worker.steps["events"]
        state = worker.state
        events.send(
            type_,
            freq=self.interval,
            active=len(state.active),
            processed=state.processed,
            loadavg=load_average(),
            **events.software_info,
        )
        self.sent += 1

    def stop(self, worker: Any) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            worker.steps["timer"].timer.cancel(entry)
        # buffered task events go first: a monitor takes any event after worker-offline
        # (task events count as heartbeats) as a sign of life
        worker.steps["events"].flush()
        self._send("worker-offline")

    def info(self) -> dict[str, Any]:
        return {"interval": self.interval, "sent": self.sent}
