"""Event feeds for the monitor: where Celery-shaped event dicts come from.

A feed is any callable ``subscribe(handler) -> unsubscribe`` that calls ``handler(event)``
with Celery's event dicts (``type``, ``hostname``, ``timestamp``, ``uuid``, ...) from any
thread. `signal_feed` builds them from an app's own signals, so in-process workers are
monitored with nothing else running; an events receiver (``celeryev``) plugs in the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import states
from ..protocol import saferepr

__all__ = [
    "Event",
    "EventFeed",
    "EventHandler",
    "app_feed",
    "combined",
    "receiver_feed",
    "signal_feed",
    "worker_heartbeat",
]

Event = dict[str, Any]
EventHandler = Callable[[Event], None]
EventFeed = Callable[[EventHandler], Callable[[], None]]

_DONE_EVENTS = {
    states.SUCCESS: "task-succeeded",
    states.FAILURE: "task-failed",
    states.RETRY: "task-retried",
    states.REJECTED: "task-rejected",
    states.REVOKED: "task-revoked",
}


def _event(type_: str, hostname: str | None, **fields: Any) -> Event:
    return {"type": type_, "hostname": hostname, "timestamp": time.time(), **fields}


class _SignalEvents:
    """One subscription: the app's signals turned into events for `handler`."""

    def __init__(self, app: Any, handler: EventHandler) -> None:
        self.app = app
        self.handler = handler
        self.receivers = {
            "task_received": self.received,
            "task_prerun": self.prerun,
            "task_postrun": self.postrun,
            "worker_ready": self.online,
            "worker_shutdown": self.offline,
        }
        for name, receiver in self.receivers.items():
            app.signals[name].connect(receiver)

    def received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        headers = request.task_message.headers
        args = headers.get("argsrepr") or saferepr(request.task_message.args)
        kwargs = headers.get("kwargsrepr") or saferepr(request.task_message.kwargs)
        self.handler(
            _event(
                "task-received",
                sender.hostname,
                uuid=request.id,
                name=request.name,
                args=args,
                kwargs=kwargs,
            )
        )

    def prerun(self, sender: Any = None, task_id: str = "", task: Any = None, **_: Any) -> None:
        self.handler(_event("task-started", task.request.hostname, uuid=task_id))

    def postrun(
        self, sender: Any = None, task_id: str = "", task: Any = None, state: str = "", **kw: Any
    ) -> None:
        type_ = _DONE_EVENTS.get(state)
        if type_ is not None:
            result = saferepr(kw.get("retval"))
            self.handler(_event(type_, task.request.hostname, uuid=task_id, result=result))

    def online(self, sender: Any = None, **_: Any) -> None:
        self.handler(_worker_event("worker-online", sender))

    def offline(self, sender: Any = None, **_: Any) -> None:
        self.handler(_worker_event("worker-offline", sender))

    def close(self) -> None:
        for name, receiver in self.receivers.items():
            self.app.signals[name].disconnect(receiver)


def signal_feed(app: Any) -> EventFeed:
    """A feed of the events `app`'s in-process workers would send, made from its signals."""

    def subscribe(handler: EventHandler) -> Callable[[], None]:
        return _SignalEvents(app, handler).close

    return subscribe


def _worker_event(type_: str, worker: Any) -> Event:
    counts = worker.state.snapshot()
    return _event(
        type_,
        worker.hostname,
        freq=worker.options.heartbeat_interval,
        active=counts["active"],
        processed=counts["processed"],
    )


def worker_heartbeat(worker: Any) -> Event:
    """A ``worker-heartbeat`` for a running in-process worker (seen directly, not over the wire)."""
    return _worker_event("worker-heartbeat", worker)


def receiver_feed(app: Any) -> EventFeed:
    """A feed of the events on `app`'s broker (``celeryev``): every worker, in any process.

    Needs the app's events receiver (``app.events``); its thread runs while subscribed.
    """

    def subscribe(handler: EventHandler) -> Callable[[], None]:
        receiver = app.events.Receiver(handlers={"*": handler})
        receiver.start()
        return receiver.stop

    return subscribe


def combined(*feeds: EventFeed) -> EventFeed:
    """One feed made of several (a monitor folds repeated events idempotently)."""

    def subscribe(handler: EventHandler) -> Callable[[], None]:
        removers = [feed(handler) for feed in feeds]

        def unsubscribe() -> None:
            for remove in reversed(removers):
                remove()

        return unsubscribe

    return subscribe


def app_feed(app: Any) -> EventFeed:
    """What the monitor and event log follow: the app's signals (its in-process workers)
    and, where the app has an events receiver, the broker's events from every worker."""
    if hasattr(type(app), "events"):
        return combined(signal_feed(app), receiver_feed(app))
    return signal_feed(app)
