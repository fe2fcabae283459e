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
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from kombu import Producer

from .. import serialization
from .event import event_exchange, routing_key_for, utcoffset

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
        Called as ``on_buffered(size)`` after each buffered event: the owner decides when
        to `flush` (Celery flushes at ``buffer_limit`` and on the next loop tick).
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
        on_buffered: Callable[[int], None] | None = None,
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
        self._buffer: deque[dict[str, Any]] = deque(maxlen=_MAX_BUFFERED)
        in_process = self.connection.transport.driver_type == "memory"
        self._retry = not in_process  # in-process: no I/O to retry
        #: the in-process broker's channel (routes and a bindings counter), else ``None``
        self._local = self.connection.default_channel if in_process else None
        self._heard: tuple[int, bool] = (-1, True)  # (bindings counter, listened) last seen
        self._offset = 0.0
        self._offset_until = 0.0
        self._counter_lock = threading.Lock()
        self._take_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._closed = False
        self.sent = 0
        self.dropped = 0
        #: events nobody was bound to receive (known on the in-process transport only)
        self.unrouted = 0

    # sending ------------------------------------------------------------------------
    def send(self, type_: str, *, blind: bool = False, **fields: Any) -> None:
        """Send one event (``blind`` leaves the logical clock alone); never raises."""
        self.send_fields(type_, fields, blind=blind)

    def send_fields(self, type_: str, fields: dict[str, Any], *, blind: bool = False) -> None:
        """`send` with the fields as a dict: the hot path of task events, kept lean."""
        if not self.enabled:
            return
        group = type_.partition("-")[0]
        if self.groups is not None and group not in self.groups:
            return
        now = time.time()
        if now >= self._offset_until:  # utcoffset changes twice a year: look once a minute
            self._offset, self._offset_until = utcoffset(), now + 60.0
        event = {
            "hostname": self.hostname,
            "utcoffset": self._offset,
            "pid": self.pid,
            "clock": None if blind else self.app.clock.forward(),
            **fields,
            "timestamp": now,
            "type": type_,
        }  # make_event's shape, built inline
        if group not in self.buffer_group:
            self._publish(event, routing_key_for(type_))
            return
        # No lock here: deque appends and pops are atomic, and flush only pops.
        buffer = self._buffer
        if len(buffer) == _MAX_BUFFERED:  # the oldest falls out (counted approximately)
            self.dropped += 1
        buffer.append(event)
        if self.on_buffered is not None:
            self.on_buffered(len(buffer))

    def flush(self, *, full_only: bool = False) -> None:
        """Publish the buffered events, ``buffer_limit`` at a time, as ``<group>.multi`` lists
        (with `full_only`, only whole batches: the rest waits for the next flush)."""
        buffer, limit = self._buffer, self.buffer_limit
        if len(self.buffer_group) == 1:  # (the worker's case) every buffered event is of it
            self._flush_group(next(iter(self.buffer_group)), full_only)
            return
        batches: dict[str, list[dict[str, Any]]] = {}
        while True:
            try:
                event = buffer.popleft()
            except IndexError:
                break
            group = event["type"].partition("-")[0]
            batch = batches.setdefault(group, [])
            batch.append(event)
            if len(batch) >= limit:
                self._publish(batches.pop(group), f"{group}.multi")
        for group, batch in batches.items():
            self._publish(batch, f"{group}.multi")

    def _flush_group(self, group: str, full_only: bool) -> None:
        """Publish one group's events. Batches are taken whole under a lock, so threads
        flushing at once each send full batches rather than splinters of one."""
        buffer, limit, routing_key = self._buffer, self.buffer_limit, f"{group}.multi"
        popleft = buffer.popleft
        while True:
            with self._take_lock:
                size = min(limit, len(buffer))
                if not size or (full_only and size < limit):
                    return
                batch = [popleft() for _ in range(size)]  # only flushers pop: never short
            self._publish(batch, routing_key)

    def listened(self) -> bool:
        """Whether an event sent now could reach anyone: on the in-process broker, whether a
        queue is bound to the event exchange (a monitor, a receiver); elsewhere always (a
        broker's subscribers cannot be known). Callers skip building unheard events."""
        local = self._local
        if local is None:
            return True
        seen, heard = self._heard
        bindings = local.space.bindings
        if seen != bindings:  # looked up again only when a binding changed
            heard = bool(local.routes(self.exchange.name, "task.multi"))
            self._heard = (bindings, heard)
        if not heard:
            self.unrouted += 1
        return heard

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
                routes = getattr(producer.channel, "routes", None)
                if routes is not None and not routes(self.exchange.name, routing_key):
                    self.unrouted += count  # the broker would drop it: skip encoding it
                    return
                content_type, encoding, payload = serialization.dumps(body, self.serializer)
                producer.publish(
                    payload,
                    exchange=self.exchange.name,
                    routing_key=routing_key,
                    content_type=content_type,
                    content_encoding=encoding,
                    headers=self._headers,
                    delivery_mode=1,
                    retry=self._retry,
                    retry_policy=_RETRY_POLICY,
                )
            except Exception as exc:
                self._count_dropped(count)
                logger.warning("%s: could not send event %s: %r", self.hostname, routing_key, exc)
            else:
                self.sent += count

    def _count_dropped(self, count: int) -> None:
        with self._counter_lock:
            self.dropped += count

    def _new_producer(self) -> Producer:
        """The producer, created at first use; declares the exchange once (locked by caller)."""
        self.connection.ensure_connection(**_RETRY_POLICY)  # fail fast: events can wait
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
            "unrouted": self.unrouted,
            "dropped": self.dropped,
            "buffered": self.buffered,
        }

    def __enter__(self) -> EventDispatcher:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EventDispatcher {self.hostname} enabled={self.enabled}>"
