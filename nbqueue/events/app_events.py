"""``app.events``: the app's factory for dispatchers, receivers and states, and task-sent.

Creating it connects a receiver to the app's ``after_task_publish`` signal that sends a
``task-sent`` event for each published task while ``task_send_sent_event`` is on; the app
creates it the first time it publishes with that setting on.
"""

from __future__ import annotations

import threading
from typing import Any

from .dispatcher import EventDispatcher
from .receiver import EventReceiver
from .state import State

__all__ = ["Events"]


class Events:
    """Celery's ``app.events``: ``app.events.Receiver(handlers=...)``, ``app.events.State()``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sent_dispatcher: EventDispatcher | None = None
        self._lock = threading.Lock()
        app.signals.after_task_publish.connect(self._on_task_published)

    def Dispatcher(self, connection: Any = None, **options: Any) -> EventDispatcher:
        """A new `EventDispatcher` for this app (a client's unless ``hostname`` is given)."""
        return EventDispatcher(self.app, connection=connection, **options)

    def Receiver(self, connection: Any = None, **options: Any) -> EventReceiver:
        """A new `EventReceiver` for this app: ``handlers={"*": state.event}``."""
        return EventReceiver(self.app, connection, **options)

    def State(self, **options: Any) -> State:
        """A new, empty cluster `State`."""
        return State(**options)

    # task-sent ----------------------------------------------------------------------------
    def _on_task_published(
        self,
        sender: str | None = None,
        headers: dict[str, Any] | None = None,
        exchange: str = "",
        routing_key: str = "",
        **_: Any,
    ) -> None:
        if not self.app.conf.task_send_sent_event or not headers:
            return
        self._dispatcher().send(
            "task-sent",
            uuid=headers.get("id"),
            root_id=headers.get("root_id"),
            parent_id=headers.get("parent_id"),
            name=sender,
            args=headers.get("argsrepr"),
            kwargs=headers.get("kwargsrepr"),
            retries=headers.get("retries", 0),
            eta=headers.get("eta"),
            expires=headers.get("expires"),
            queue=self._queue_name(exchange, routing_key),
            exchange=exchange,
            routing_key=routing_key,
        )

    def _queue_name(self, exchange: str, routing_key: str) -> str:
        """The queue a message went to: the routing key on the anonymous exchange."""
        if not exchange:
            return routing_key
        for queue in self.app.router.queues.values():
            same_exchange = queue.exchange is not None and queue.exchange.name == exchange
            if same_exchange and queue.routing_key == routing_key:
                return queue.name
        return routing_key

    def _dispatcher(self) -> EventDispatcher:
        with self._lock:
            if self._sent_dispatcher is None:
                self._sent_dispatcher = EventDispatcher(self.app)
            return self._sent_dispatcher

    def close(self) -> None:
        """Release the task-sent dispatcher's connection."""
        with self._lock:
            dispatcher, self._sent_dispatcher = self._sent_dispatcher, None
        if dispatcher is not None:
            dispatcher.close()

    def __repr__(self) -> str:
        return f"<Events of {self.app.main!r}>"
