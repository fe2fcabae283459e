"""Celery message protocol v2, built and parsed in one pure module (v1 accepted on receipt).

A task message is *headers* + *properties* + a *body* ``(args, kwargs, embed)`` where
``embed = {"callbacks", "errbacks", "chain", "chord"}``. Nothing here does I/O: the
publisher hands the result to kombu, the worker hands in what kombu delivered.
"""

from __future__ import annotations

import os
import random
import reprlib
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict

from .exceptions import ProtocolError

__all__ = [
    "Embed",
    "TaskHeaders",
    "TaskMessage",
    "TaskProperties",
    "build_task_message",
    "new_id",
    "origin",
    "parse_task_message",
    "parse_time",
    "saferepr",
]


class Embed(TypedDict, total=False):
    callbacks: list[dict[str, Any]] | None
    errbacks: list[dict[str, Any]] | None
    chain: list[dict[str, Any]] | None
    chord: dict[str, Any] | None


class TaskHeaders(TypedDict, total=False):
    lang: str
    task: str
    id: str
    shadow: str | None
    eta: str | None
    expires: str | None
    group: str | None
    group_index: int | None
    retries: int
    timelimit: list[float | None]
    root_id: str
    parent_id: str | None
    argsrepr: str
    kwargsrepr: str
    origin: str
    ignore_result: bool | None
    replaced_task_nesting: int
    stamped_headers: list[str] | None
    stamps: dict[str, Any]


class TaskProperties(TypedDict, total=False):
    correlation_id: str
    reply_to: str
    delivery_mode: int
    priority: int
    expiration: str


_repr = reprlib.Repr()
_repr.maxstring = 256
_repr.maxother = 256
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 32
_REPR_LIMIT = 1024


_PLAIN = (int, float, bool, type(None))


def _small(obj: Any) -> bool:
    """Cheap to repr in full: a few scalars and short strings (args and kwargs first)."""
    if isinstance(obj, (tuple, list)):
        return len(obj) <= 8 and _plain_items(obj)
    if isinstance(obj, dict):  # kwargs, mostly empty: then no generator
        return not obj or (
            len(obj) <= 8
            and all(isinstance(k, str) and isinstance(v, _PLAIN) for k, v in obj.items())
        )
    if isinstance(obj, _PLAIN):
        return True
    if isinstance(obj, str):
        return len(obj) < 200
    return False


def _plain_items(items: tuple[Any, ...] | list[Any]) -> bool:
    """Scalars and short strings only."""
    for item in items:  # a loop: all(...)'s generator would cost more than the checks
        if not (isinstance(item, _PLAIN) or (isinstance(item, str) and len(item) < 100)):
            return False
    return True


def saferepr(obj: Any, limit: int = _REPR_LIMIT) -> str:
    """A repr that never raises and never exceeds `limit` characters (Celery's argsrepr)."""
    if _small(obj):
        return repr(obj)
    try:
        text = _repr.repr(obj)
    except Exception as exc:
        text = f"<unrepresentable {type(obj).__name__}: {exc!r}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """A random version-4 UUID string (task ids, delivery tags), without a syscall per id.

    Python's `random` is reseeded in a forked child, so two processes never share ids.
    """
    h = "%032x" % ((random.getrandbits(128) & _V4_CLEAR) | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ORIGIN: list[str] = []


def origin() -> str:
    """``gen<pid>@<host>``, as Celery clients write in the ``origin`` header."""
    if not _ORIGIN:
        _ORIGIN.append(f"gen{os.getpid()}@{socket.gethostname()}")
    return _ORIGIN[0]


os.register_at_fork(after_in_child=_ORIGIN.clear)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.astimezone()  # naive means local time, as Celery reads it
    return value.isoformat()


def parse_time(value: Any) -> datetime | None:
    """An ``eta``/``expires`` header as an aware datetime (naive values are local time)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    else:
        text = str(value)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ProtocolError(f"not an ISO-8601 time: {value!r}") from exc
    return dt if dt.tzinfo is not None else dt.astimezone()


@dataclass(frozen=True)
class TaskMessage:
    """One task message: what goes on the wire, and what a worker reads back."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    args: list[Any] | tuple[Any, ...]
    kwargs: dict[str, Any]
    embed: dict[str, Any] = field(default_factory=dict)

    # read-only views over the headers --------------------------------------------------
    @property
    def id(self) -> str:
        return self.headers["id"]

    @property
    def name(self) -> str:
        return self.headers["task"]

    @property
    def body(self) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """The ``(args, kwargs, embed)`` triple to serialize."""
        return (self.args, self.kwargs, self.embed)

    @property
    def eta(self) -> datetime | None:
        return parse_time(self.headers.get("eta"))

    @property
    def expires(self) -> datetime | None:
        return parse_time(self.headers.get("expires"))

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        """``(hard, soft)``, in that order, as Celery sends them."""
        limits = self.headers.get("timelimit") or (None, None)
        hard, soft = ([*list(limits), None, None])[:2]
        return hard, soft


def build_task_message(
    name: str,
    task_id: str,
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    *,
    countdown: float | None = None,
    eta: datetime | str | None = None,
    expires: float | datetime | str | None = None,
    group_id: str | None = None,
    group_index: int | None = None,
    retries: int = 0,
    chain: list[dict[str, Any]] | None = None,
    callbacks: list[dict[str, Any]] | None = None,
    errbacks: list[dict[str, Any]] | None = None,
    chord: dict[str, Any] | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    shadow: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    ignore_result: bool | None = False,
    reply_to: str = "",
    priority: int | None = None,
    headers: dict[str, Any] | None = None,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    stamps: dict[str, Any] | None = None,
    replaced_task_nesting: int = 0,
    now: datetime | None = None,
) -> TaskMessage:
    """Build a protocol v2 task message exactly as Celery 5.7's client does."""
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"task args must be a list or tuple, not {type(args).__name__}")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise TypeError(f"task kwargs must be a dict, not {type(kwargs).__name__}")
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": reply_to,
        "delivery_mode": 2,
        "priority": 0 if priority is None else int(priority),
    }
    if countdown is not None or isinstance(expires, (int, float)):
        now = now or datetime.now(timezone.utc)
    if countdown is not None:
        eta = now + timedelta(seconds=countdown)
    if isinstance(expires, (int, float)):
        properties["expiration"] = str(int(expires * 1000))
        expires = now + timedelta(seconds=expires)
    wire: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": shadow,
        "eta": _iso(eta) if isinstance(eta, datetime) else eta,
        "expires": _iso(expires) if isinstance(expires, datetime) else expires,
        "group": group_id,
        "group_index": group_index,
        "retries": retries,
        "timelimit": [time_limit, soft_time_limit],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": saferepr(args) if argsrepr is None else argsrepr,
        "kwargsrepr": saferepr(kwargs) if kwargsrepr is None else kwargsrepr,
        "origin": origin(),
        "ignore_result": ignore_result,
        "replaced_task_nesting": replaced_task_nesting,
        "stamped_headers": sorted(stamps) if stamps else None,
        "stamps": dict(stamps) if stamps else {},
    }
    if headers:
        wire.update(headers)
    embed = {"callbacks": callbacks, "errbacks": errbacks, "chain": chain, "chord": chord}
    return TaskMessage(wire, properties, list(args), kwargs, embed)


def parse_task_message(
    headers: dict[str, Any] | None, properties: dict[str, Any] | None, body: Any
) -> TaskMessage:
    """Read a delivered message (v2, or v1 with the task in the body) into a TaskMessage.

    Raises `ProtocolError` naming what is wrong when the message is neither.
    """
    headers = dict(headers or {})
    properties = dict(properties or {})
    if "task" in headers:
        return _parse_v2(headers, properties, body)
    if isinstance(body, dict) and "task" in body:
        return _parse_v1(headers, properties, body)
    raise ProtocolError("message has no 'task' header (protocol v2) and no 'task' in its body (v1)")


def _parse_v2(headers: dict[str, Any], properties: dict[str, Any], body: Any) -> TaskMessage:
    if not isinstance(headers.get("task"), str) or not headers["task"]:
        raise ProtocolError(f"header 'task' must be a task name, got {headers.get('task')!r}")
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        raise ProtocolError(f"header 'id' must be a task id, got {headers.get('id')!r}")
    if isinstance(body, dict) and "args" in body:  # "hybrid" body some clients send
        body = (body.get("args", ()), body.get("kwargs", {}), body.get("embed", {}))
    if not isinstance(body, (list, tuple)) or not 2 <= len(body) <= 3:
        raise ProtocolError(f"body must be [args, kwargs, embed], got {type(body).__name__}")
    args, kwargs, embed = (*body, {})[:3] if len(body) == 2 else body
    if not isinstance(args, (list, tuple)):
        raise ProtocolError(f"body args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise ProtocolError(f"body kwargs must be an object, got {type(kwargs).__name__}")
    if embed is None:
        embed = {}
    if not isinstance(embed, dict):
        raise ProtocolError(f"body embed must be an object, got {type(embed).__name__}")
    headers.setdefault("root_id", headers["id"])
    return TaskMessage(headers, properties, args, kwargs, embed)


def _parse_v1(headers: dict[str, Any], properties: dict[str, Any], body: dict[str, Any]):
    """Convert a protocol v1 body into the v2 shape (Celery's ``proto1_to_proto2``)."""
    task_id = body.get("id")
    hard, soft = ([*list(body.get("timelimit") or ()), None, None])[:2]
    converted = {
        **headers,
        "lang": "py",
        "task": body["task"],
        "id": task_id,
        "eta": body.get("eta"),
        "expires": body.get("expires"),
        "group": body.get("taskset") or body.get("group"),
        "group_index": body.get("group_index"),
        "retries": body.get("retries", 0),
        "timelimit": [hard, soft],
        "root_id": task_id,
        "parent_id": None,
    }
    embed = {
        "callbacks": body.get("callbacks"),
        "errbacks": body.get("errbacks"),
        "chain": None,
        "chord": body.get("chord"),
    }
    return _parse_v2(converted, properties, [body.get("args", []), body.get("kwargs", {}), embed])
