"""Sending events: Celery's `EventDispatcher`, on a connection of its own.

Events are fire-and-forget (``delivery_mode`` 1): when the broker cannot take one it is
logged and counted as dropped, never raised into the task or thread that sent it. Task
events can be *buffered* (``buffer_group=["task"]``) and published as one list on
``task.multi``, the way a Celery worker with an event loop sends them; whoever owns the
dispatcher calls `flush` (the worker's Events step does, from its own thread).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kombu import Producer

from .event import event_exchange, group_from, make_event, routing_key_for

__all__ = ["EventDispatcher"]

logger = logging.getLogger(__name__)

#: kombu retry policy for one publish: reconnect once, quickly, then give up (and drop)
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
#: buffered events kept while they cannot be published, before the oldest are dropped
_MAX_BUFFERED = 10_000


class EventDispatcher:
    """Publishes events for one node (`hostname`) on the app's ``event_exchange``.

    Parameters
    ----------
    app:
        The app whose clock, settings and broker are used.
    hostname:
        The node name put in every event (default ``gen<pid>@<host>``, a client's name).
    connection:
        A kombu connection to publish on; by default one of its own, released by `close`.
    enabled:
        When false, `send` does nothing.
    groups:
        Event groups to send (``{"worker"}``); ``None`` sends every group.
    buffer_group:
        Groups whose events are buffered until `flush` and published as ``<group>.multi``.
    buffer_limit:
        Most events in one ``*.multi`` message (Celery's 24).
    on_buffered:
        Called when a buffered event lands in an empty buffer (to schedule a `flush`).
    """

    def __init__(
        self,
        app: Any,
        *,
        hostname: str | None = None,
        connection: Any = None,
        enabled: bool = True,
        groups: Iterable[str] | None = None,
        buffer_group: Iterable[str] | None = None,
        buffer_limit: int = 24,
        on_buffered: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.hostname = hostname or f"gen{os.getpid()}@{socket.gethostname()}"
        self.pid = os.getpid()
        self.enabled = enabled
        self.groups: set[str] | None = set(groups) if groups is not None else None
        self.buffer_group = frozenset(buffer_group or ())
        self.buffer_limit = max(int(buffer_limit), 1)
        self.on_buffered = on_buffered
        self.serializer = app.conf.event_serializer
        self._owns_connection = connection is None
        self.connection = app.connection() if connection is None else connection
        self.exchange = event_exchange(self.connection, app.conf.event_exchange)
        self._headers = {"hostname": self.hostname}
        self._producer: Producer | None = None
        self._buffer: list[dict[str, Any]] = []
        self._buffer_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._closed = False
        self.sent = 0
        self.dropped = 0

    # sending ------------------------------------------------------------------------
    def wants(self, type_: str) -> bool:
        """Whether an event of `type_` would be sent now."""
        return self.enabled and (self.groups is None or group_from(type_) in self.groups)

    def send(self, type_: str, *, blind: bool = False, **fields: Any) -> None:
        """Send one event (``blind`` leaves the logical clock alone); never raises."""
        if not self.wants(type_):
            return
        clock = None if blind else self.app.clock.forward()
        event = make_event(type_, fields, hostname=self.hostname, pid=self.pid, clock=clock)
        if group_from(type_) in self.buffer_group:
            self._buffer_event(event)
        else:
            self._publish(event, routing_key_for(type_))

    def _buffer_event(self, event: dict[str, Any]) -> None:
        with self._buffer_lock:
            was_empty = not self._buffer
            self._buffer.append(event)
            overflow = len(self._buffer) - _MAX_BUFFERED
            if overflow > 0:
                del self._buffer[:overflow]
                self.dropped += overflow  # counters change under the buffer lock
        if was_empty and self.on_buffered is not None:
            self.on_buffered()

    def flush(self) -> None:
        """Publish the buffered events, ``buffer_limit`` at a time, as ``<group>.multi`` lists."""
        with self._buffer_lock:
            events, self._buffer = self._buffer, []
        by_group: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_group.setdefault(group_from(event["type"]), []).append(event)
        limit = self.buffer_limit
        for group, batch in by_group.items():
            for start in range(0, len(batch), limit):
                self._publish(batch[start : start + limit], f"{group}.multi")

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _publish(self, body: Any, routing_key: str) -> None:
        count = len(body) if isinstance(body, list) else 1
        with self._publish_lock:
            if self._closed:
                self._count_dropped(count)
                return
            try:
                producer = self._producer or self._new_producer()
                producer.publish(
                    body,
                    exchange=self.exchange.name,
                    routing_key=routing_key,
                    serializer=self.serializer,
                    headers=self._headers,
                    delivery_mode=1,
                    retry=True,
                    retry_policy=_RETRY_POLICY,
                )
            except Exception as exc:
                self._count_dropped(count)
                logger.warning("%s: could not send event %s: %r", self.hostname, routing_key, exc)
            else:
                self.sent += count

    def _count_dropped(self, count: int) -> None:
        with self._buffer_lock:
            self.dropped += count

    def _new_producer(self) -> Producer:
        """The producer, created at first use; declares the exchange once (locked by caller)."""
        channel = self.connection.default_channel
        self.exchange.declare(channel=channel)
        self._producer = Producer(channel, exchange=self.exchange, auto_declare=False)
        return self._producer

    # lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Publish what is buffered, then stop sending; releases an owned connection."""
        self.flush()
        with self._publish_lock:
            self._closed = True
            self._producer = None
            if self._owns_connection:
                try:
                    self.connection.release()
                except Exception:
                    logger.debug("releasing the events connection failed", exc_info=True)

    def info(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "groups": sorted(self.groups) if self.groups is not None else None,
            "sent": self.sent,
            "dropped": self.dropped,
            "buffered": self.buffered,
        }

    def __enter__(self) -> EventDispatcher:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EventDispatcher {self.hostname} enabled={self.enabled}>"
