"""Receiving events: Celery's `EventReceiver`, in the caller's thread or a thread of its own.

The receiver binds a queue of its own (``celeryev.<uuid>``, auto-deleted) to the events
exchange, accepts single events and ``*.multi`` lists alike, keeps the app's logical clock
in step, and hands each event to ``handlers[type]`` (or ``handlers["*"]``). When it starts
consuming it broadcasts the ``heartbeat`` control command, so every worker announces
itself at once instead of at its next heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kombu import Consumer, Queue

from .event import event_exchange, event_from_message

__all__ = ["EventReceiver"]

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]


class EventReceiver:
    """Consumes events: ``EventReceiver(app, handlers={"*": state.event}).capture()``.

    Parameters
    ----------
    app:
        The app whose broker, clock and settings are used.
    connection:
        A kombu connection used only by this receiver (default: a new one).
    handlers:
        Event type → callable taking the event dict; ``"*"`` catches the rest.
    routing_key:
        Binding key: ``"#"`` for everything, ``"worker.#"`` for worker events only.
    """

    #: seconds one drain waits before looking at `should_stop` again
    poll_interval = 0.25

    def __init__(
        self,
        app: Any,
        connection: Any = None,
        *,
        handlers: Mapping[str, Handler] | None = None,
        routing_key: str = "#",
        node_id: str | None = None,
        queue_prefix: str | None = None,
        queue_ttl: float | None = None,
        queue_expires: float | None = None,
        localize: bool = True,
    ) -> None:
        conf = app.conf
        self.app = app
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.routing_key = routing_key
        self.node_id = node_id or uuid.uuid4().hex
        self.localize = localize
        self._owns_connection = connection is None
        self.connection = app.connection() if connection is None else connection
        self.exchange = event_exchange(self.connection, conf.event_exchange)
        self.queue = Queue(
            f"{queue_prefix or conf.event_queue_prefix}.{self.node_id}",
            exchange=self.exchange,
            routing_key=routing_key,
            auto_delete=True,
            durable=False,
            exclusive=True,
            message_ttl=conf.event_queue_ttl if queue_ttl is None else queue_ttl,
            expires=conf.event_queue_expires if queue_expires is None else queue_expires,
        )
        self.should_stop = False
        #: set once the queue is bound and consumed (events sent after this are seen)
        self.ready = threading.Event()
        self.received = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # handling -------------------------------------------------------------------------
    def process(self, type_: str, event: dict[str, Any]) -> None:
        """Hand `event` to its handler; a failing handler is logged, never raised."""
        handler = self.handlers.get(type_) or self.handlers.get("*")
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            logger.exception("event handler for %s failed", type_)

    def event_from_message(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return event_from_message(body, self.app.clock, localize=self.localize)

    def _receive(self, body: Any, message: Any) -> None:
        events = body if isinstance(body, list) else [body]
        for body_event in events:
            if not isinstance(body_event, dict) or "type" not in body_event:
                logger.error("ignored a malformed event (not a dict with a type): %.200r", body)
                continue
            type_, event = self.event_from_message(body_event)
            self.received += 1
            self.process(type_, event)

    # consuming in the caller's thread ------------------------------------------------
    def itercapture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True
    ) -> Iterator[None]:
        """Yield after each message received (a ``*.multi`` list counts once).

        Stops after `limit` messages, when `should_stop` is set, or raises ``TimeoutError``
        when nothing arrived for `timeout` seconds.
        """
        channel = self.connection.channel()
        consumer = Consumer(
            channel, queues=[self.queue], callbacks=[self._receive], no_ack=True, accept=["json"]
        )
        try:
            consumer.consume()
            if wakeup:
                self.wakeup_workers()
            self.ready.set()
            yield from self._drain(limit, timeout)
        finally:
            self._close_consumer(consumer, channel)

    def _drain(self, limit: int | None, timeout: float | None) -> Iterator[None]:
        delivered = 0
        idle_since = time.monotonic()
        while not self.should_stop and (limit is None or delivered < limit):
            try:
                self.connection.drain_events(timeout=self.poll_interval)
            except TimeoutError:
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    raise
                continue
            delivered += 1
            idle_since = time.monotonic()
            yield

    def capture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True
    ) -> None:
        """Consume events until `limit` messages, `should_stop`, or `timeout` idle seconds."""
        for _ in self.itercapture(limit=limit, timeout=timeout, wakeup=wakeup):
            pass

    def wakeup_workers(self) -> None:
        """Ask every worker for a heartbeat now (the ``heartbeat`` control command)."""
        try:
            self.app.control.broadcast("heartbeat")
        except Exception as exc:
            logger.warning("could not wake the workers up for events: %r", exc)

    @staticmethod
    def _close_consumer(consumer: Any, channel: Any) -> None:
        for close in (consumer.cancel, channel.close):
            try:
                close()
            except Exception:
                logger.debug("closing the event consumer failed", exc_info=True)

    # consuming in a thread of its own -------------------------------------------------
    def start(self, *, wakeup: bool = True, timeout: float = 10.0) -> EventReceiver:
        """Capture in a daemon thread (``nbqueue-<app>-events-…``); returns once consuming."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self.should_stop = False
        self.ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run,
            args=(wakeup,),
            name=f"nbqueue-{self.app.main}-events-{self.node_id[:8]}",
            daemon=True,
        )
        self._thread.start()
        if not self.ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"event receiver did not start consuming within {timeout} s")
        if self._error is not None:
            self.stop()
            raise self._error
        return self

    def _run(self, wakeup: bool) -> None:
        try:
            self.capture(wakeup=wakeup)
        except Exception as exc:
            self._error = exc
            logger.exception("event receiver %s stopped on an error", self.node_id)
        finally:
            self.ready.set()  # never leave start() waiting

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing, join the thread, and release an owned connection."""
        self.should_stop = True
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            wake = getattr(getattr(self.connection, "transport", None), "wakeup", None)
            if wake is not None:
                wake()
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("event receiver %s did not stop within %s s", self.node_id, timeout)
        if self._owns_connection:  # released; a fresh (unconnected) one for a later start
            self.connection.release()
            self.connection = self.app.connection()

    def __enter__(self) -> EventReceiver:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EventReceiver {self.queue.name} {self.routing_key!r}>"
