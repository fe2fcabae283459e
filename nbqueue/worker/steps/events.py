"""Events: the worker's event dispatcher, on a connection of its own.

Task events (``task-received`` ... ``task-succeeded``) are sent only while ``task_events``
is on (``send_events=True``/``worker_send_task_events``, or the ``enable_events``
command). They are buffered and published by this step's thread as ``task.multi`` lists,
as a Celery worker with an event loop does, so a pool thread never waits on the broker.
Worker events (heartbeats, gossip) are always sent while the step runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ...bootsteps import Step
from ...events import SOFTWARE_INFO, EventDispatcher

__all__ = ["Events"]

logger = logging.getLogger(__name__)


class Events(Step):
    """Owns the `EventDispatcher` and its flusher thread (``nbqueue-<worker>-events``)."""

    requires = ("connection",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.task_events = worker.options.send_events
        self.dispatcher: EventDispatcher | None = None
        self.software_info = dict(SOFTWARE_INFO)
        self._thread: threading.Thread | None = None
        self._wake = threading.Condition()
        self._pending = False
        self._stopping = False

    def include(self, worker: Any) -> bool:
        opts = worker.options
        return opts.send_events or not opts.without_gossip or not opts.without_heartbeat

    def start(self, worker: Any) -> None:
        self.dispatcher = EventDispatcher(
            worker.app,
            hostname=worker.hostname,
            groups=None if self.task_events else {"worker"},
            buffer_group={"task"},
            on_buffered=self._schedule_flush,
        )
        self._stopping = False
        self._thread = threading.Thread(
            target=self._flush_loop, name=f"nbqueue-{worker.hostname}-events", daemon=True
        )
        self._thread.start()

    # sending --------------------------------------------------------------------------
    def send(self, type_: str, **fields: Any) -> None:
        """Send a worker event (``worker-heartbeat``, ``worker-elect``, ...) now."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.send(type_, **fields)

    def send_task_event(self, type_: str, **fields: Any) -> None:
        """Buffer a task event (the worker calls this while `task_events` is on)."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.send(type_, **fields)

    def set_task_events(self, enabled: bool) -> bool:
        """Turn task events on or off; returns whether anything changed."""
        if self.task_events == enabled:
            return False
        self.task_events = enabled
        dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.groups = None if enabled else {"worker"}
        logger.info("%s: task events %s", self.parent.hostname, "on" if enabled else "off")
        return True

    # the flusher thread ---------------------------------------------------------------
    def _schedule_flush(self) -> None:
        with self._wake:
            self._pending = True
            self._wake.notify()

    def _flush_loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                self._pending = False
                stopping = self._stopping
            dispatcher = self.dispatcher
            if dispatcher is not None:
                dispatcher.flush()
            if stopping:
                return

    def stop(self, worker: Any) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(worker.options.shutdown_timeout)
            if thread.is_alive():
                logger.warning("%s: events thread did not stop", worker.hostname)
        dispatcher, self.dispatcher = self.dispatcher, None
        if dispatcher is not None:
            dispatcher.close()

    def info(self) -> dict[str, Any]:
        dispatcher = self.dispatcher
        info: dict[str, Any] = {"task_events": self.task_events}
        if dispatcher is not None:
            info.update(dispatcher.info())
        return info
