"""Events: the worker's event dispatcher, on a connection of its own.

Task events (``task-received`` ... ``task-succeeded``) are sent only while ``task_events``
is on (``send_events=True``/``worker_send_task_events``, or the ``enable_events``
command). Like a Celery worker with an event loop, the step buffers them and publishes
them as ``task.multi`` lists: whole batches as soon as ``buffer_limit`` (24) are waiting,
by the thread that sent the last one, and the rest at most `flush_interval` seconds after
the first, from the worker's timer. Worker events (heartbeats, gossip) go out at once.
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
    """Owns the `EventDispatcher`; flushes buffered task events (no thread of its own)."""

    requires = ("connection",)
    #: seconds a buffered task event may wait for others to share its message
    flush_interval = 0.05

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.task_events = worker.options.send_events
        self.dispatcher: EventDispatcher | None = None
        self.software_info = dict(SOFTWARE_INFO)
        self._flush_entry: Any = None
        self._limit = 24
        self._lock = threading.Lock()

    def include(self, worker: Any) -> bool:
        opts = worker.options
        return opts.send_events or not opts.without_gossip or not opts.without_heartbeat

    def start(self, worker: Any) -> None:
        self.dispatcher = EventDispatcher(
            worker.app,
            hostname=worker.hostname,
            groups=None if self.task_events else {"worker"},
            buffer_group={"task"},
            on_buffered=self._on_buffered,
        )
        self._limit = self.dispatcher.buffer_limit

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
            dispatcher.send_fields(type_, fields)

    def listened(self) -> bool:
        """Whether task events could reach anyone now (`EventDispatcher.listened`)."""
        dispatcher = self.dispatcher
        return dispatcher is not None and dispatcher.listened()

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

    # flushing -------------------------------------------------------------------------
    def _on_buffered(self, size: int) -> None:
        if size < self._limit and self._flush_entry is not None:
            return  # the common case: a flush is already due
        dispatcher = self.dispatcher
        if dispatcher is None:
            return
        if size >= self._limit:
            dispatcher.flush(full_only=True)  # whole batches; the timer sweeps the rest
            if not dispatcher.buffered:
                return
        with self._lock:
            if self._flush_entry is not None:
                return
            timer = self.parent.steps["timer"].timer
            self._flush_entry = timer.call_after(self.flush_interval, self._flush_due)

    def _flush_due(self) -> None:
        """Timer thread: publish what waited `flush_interval` seconds."""
        with self._lock:
            self._flush_entry = None
        self.flush()

    def flush(self) -> None:
        """Publish the buffered task events now."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.flush()

    def stop(self, worker: Any) -> None:
        with self._lock:
            entry, self._flush_entry = self._flush_entry, None
        if entry is not None:
            worker.steps["timer"].timer.cancel(entry)
        dispatcher, self.dispatcher = self.dispatcher, None
        if dispatcher is not None:
            dispatcher.close()  # publishes what is still buffered

    def info(self) -> dict[str, Any]:
        dispatcher = self.dispatcher
        info: dict[str, Any] = {"task_events": self.task_events}
        if dispatcher is not None:
            info.update(dispatcher.info())
        return info
