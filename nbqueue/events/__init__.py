"""Celery-format events: a dispatcher, a receiver, and an in-memory cluster state.

>>> state = app.events.State()
>>> with app.events.Receiver(handlers={"*": state.event}):
...     ...                                  # workers come online, run tasks
>>> [w.hostname for w in state.alive_workers()]
"""

from __future__ import annotations

from .app_events import Events
from .dispatcher import EventDispatcher
from .event import (
    EVENT_EXCHANGE,
    SOFTWARE_INFO,
    Event,
    TaskEvent,
    WorkerEvent,
    event_exchange,
    event_from_message,
    group_from,
    load_average,
    utcoffset,
)
from .receiver import EventReceiver
from .state import State, TaskInfo, WorkerInfo

__all__ = [
    "EVENT_EXCHANGE",
    "SOFTWARE_INFO",
    "Event",
    "EventDispatcher",
    "EventReceiver",
    "Events",
    "State",
    "TaskEvent",
    "TaskInfo",
    "WorkerEvent",
    "WorkerInfo",
    "event_exchange",
    "event_from_message",
    "group_from",
    "load_average",
    "utcoffset",
]
