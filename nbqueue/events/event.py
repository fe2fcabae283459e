"""Celery's event format: fields, routing keys, the ``celeryev`` exchange, reading events back.

An event is a flat dict. Every event carries ``hostname``, ``utcoffset`` (hours *west* of
UTC, like ``time.timezone``), ``pid``, ``clock`` (the app's Lamport clock), ``timestamp``
and ``type`` (``group-subject``: ``task-succeeded``, ``worker-heartbeat``). It travels on
the ``celeryev`` exchange with the type's dashes turned into dots as routing key
(``task.succeeded``); batches of task events travel as a list on ``task.multi``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from importlib import metadata
from typing import Any, TypedDict

from kombu import Exchange

__all__ = [
    "EVENT_EXCHANGE",
    "SOFTWARE_INFO",
    "Event",
    "TaskEvent",
    "WorkerEvent",
    "adjust_timestamp",
    "event_exchange",
    "event_from_message",
    "group_from",
    "load_average",
    "routing_key_for",
    "utcoffset",
]

EVENT_EXCHANGE = "celeryev"
#: transports whose topic exchanges are emulated with PUB/SUB: Celery uses fanout there
_FANOUT_TRANSPORTS = frozenset({"redis", "gcpubsub"})
#: task-sent comes from clients, whose clocks never sync: Celery puts it just after ours
_CLIENT_CLOCK_SKEW = -1


def _version() -> str:
    try:
        return metadata.version("nbqueue")
    except metadata.PackageNotFoundError:  # running from a source tree without metadata
        return "0.0.0"


#: what a worker says it runs, in worker-online/heartbeat/offline (Celery: "py-celery")
SOFTWARE_INFO: dict[str, str] = {
    "sw_ident": "py-nbqueue",
    "sw_ver": _version(),
    "sw_sys": platform.system(),
}


class Event(TypedDict, total=False):
    """Fields every event has (``local_received`` is added by receivers)."""

    hostname: str
    utcoffset: float
    pid: int
    clock: int
    timestamp: float
    type: str
    local_received: float


class WorkerEvent(Event, total=False):
    """``worker-online``, ``worker-heartbeat``, ``worker-offline``."""

    freq: float
    active: int
    processed: int
    loadavg: list[float]
    sw_ident: str
    sw_ver: str
    sw_sys: str


class TaskEvent(Event, total=False):
    """``task-*`` events; which fields are set depends on the type (facts §5.3)."""

    uuid: str
    name: str
    args: str
    kwargs: str
    root_id: str | None
    parent_id: str | None
    retries: int
    eta: str | None
    expires: str | None
    result: str
    runtime: float
    exception: str
    traceback: str
    terminated: bool
    signum: int | None
    expired: bool
    requeue: bool
    queue: str
    exchange: str
    routing_key: str


def utcoffset() -> float:
    """Hours west of UTC right now (UTC+2 → ``-2.0``), as Celery 5.7 sends it."""
    if time.localtime().tm_isdst > 0:
        return time.altzone / 3600
    return time.timezone / 3600


#: (our utcoffset, until when it is taken as is): it changes twice a year, look once a minute
_here = (0.0, 0.0)


def _local_offset() -> float:
    global _here
    offset, until = _here
    now = time.time()
    if now >= until:
        offset = utcoffset()
        _here = (offset, now + 60.0)
    return offset


def adjust_timestamp(timestamp: float, offset: float, here: float | None = None) -> float:
    """`timestamp` sent by a host `offset` hours west of UTC, on our local clock."""
    here = _local_offset() if here is None else here
    return timestamp - (offset - here) * 3600


def group_from(type_: str) -> str:
    """``task-sent`` → ``task``."""
    return type_.split("-", 1)[0]


def routing_key_for(type_: str) -> str:
    """``worker-elect-ack`` → ``worker.elect.ack``."""
    return type_.replace("-", ".")


def event_exchange(connection: Any, name: str = EVENT_EXCHANGE) -> Exchange:
    """The events exchange for `connection`: topic, or fanout where topics are emulated."""
    driver = connection.transport.driver_type
    return Exchange(name, type="fanout" if driver in _FANOUT_TRANSPORTS else "topic")


def event_from_message(
    body: dict[str, Any], clock: Any, *, localize: bool = True, now: Any = time.time
) -> tuple[str, dict[str, Any]]:
    """Prepare a received event: sync `clock`, localize ``timestamp``, add ``local_received``."""
    type_ = body["type"]
    if type_ == "task-sent":
        body["clock"] = (clock.value or 1) + _CLIENT_CLOCK_SKEW
        clock.adjust(body["clock"])
    elif body.get("clock") is None:
        body["clock"] = clock.forward()
    else:
        clock.adjust(body["clock"])
    if localize and "timestamp" in body and "utcoffset" in body:
        body["timestamp"] = adjust_timestamp(body["timestamp"], body["utcoffset"])
    body["local_received"] = now()
    return type_, body


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, each rounded up to two decimals (Celery's)."""
    try:
        loads = os.getloadavg()
    except (AttributeError, OSError):  # not available on this platform
        return [0.0, 0.0, 0.0]
    return [math.ceil(load * 100) / 100 for load in loads]
