"""Control: the worker's pidbox node, answering remote-control and inspect commands."""

from __future__ import annotations

import logging
from typing import Any

from ...bootsteps import Step
from ...control import ControlContext, ControlNode
from .channels import close_consumer, supports_broadcast

__all__ = ["Control"]

logger = logging.getLogger(__name__)


class Control(Step):
    """Consumes ``<hostname>.<control_exchange>.pidbox`` on the worker's connection, in the
    loop thread, and answers with the app's command registry (``app.control.commands``)."""

    requires = ("tasks",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.node: ControlNode | None = None
        self.handled = 0
        self._consumer: Any = None

    def include(self, worker: Any) -> bool:
        return bool(worker.app.conf.worker_enable_remote_control) and supports_broadcast(worker.app)

    def start(self, worker: Any) -> None:
        worker.steps["hub"].loop.run_sync(self._listen, worker)

    def _listen(self, worker: Any) -> None:
        control = worker.app.control
        channel = worker.steps["connection"].connection.channel()
        self.node = ControlNode(
            worker.hostname,
            state=ControlContext(worker, worker.app, worker.hostname),
            channel=channel,
            handlers=control.commands.handlers(),
            mailbox=control.mailbox,
        )
        self._consumer = self.node.listen(callback=self.on_message)

    def on_message(self, body: Any, message: Any) -> None:
        """A control request (loop thread); never raises into the loop."""
        self.parent.app.clock.forward()
        try:
            if not isinstance(body, dict):
                raise TypeError(f"a control request must be a dict, not {type(body).__name__}")
            node = self.node
            if node is None:
                raise RuntimeError("the control node is stopped")
            node.handle_message(body, message)
            self.handled += 1
        except Exception as exc:
            logger.error("%s: ignored a bad control request: %r", self.parent.hostname, exc)

    def stop(self, worker: Any) -> None:
        channel = self.node.channel if self.node is not None else None
        worker.steps["hub"].loop.run_sync(close_consumer, self._consumer, channel)
        self._consumer = self.node = None

    def info(self) -> dict[str, Any]:
        return {"handled": self.handled}
