"""What every result backend shares: the meta document, exceptions as data, waiting.

A backend stores one *meta* dict per task id, the same shape (and key order) Celery writes::

    {"status", "result", "traceback", "children", "date_done", ["group_id", "parent_id"],
     [extended: "name", "args", "kwargs", "worker", "retries", "queue"], "task_id"}

Subclasses implement the small storage primitives (`_get`, `_set`, `_delete`, `_wait`);
the rules above them — never overwrite a SUCCESS, exceptions as ``{exc_type, exc_message,
exc_module}``, extended fields, expiry — live here once.
"""

from __future__ import annotations

import builtins
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any

from .. import exceptions as nbq_exceptions
from .. import states
from ..exceptions import TimeoutError

__all__ = ["Backend", "exception_to_python", "prepare_exception"]

logger = logging.getLogger(__name__)

# Celery's exceptions map onto ours by name, so results written by Celery read naturally.
_FOREIGN_MODULES = ("celery.exceptions", "nbqueue.exceptions")
_synthesized: dict[tuple[str, str], type[BaseException]] = {}


#: our exceptions that Celery also has: written under Celery's module so Celery raises its own
_CELERY_NAMES = frozenset(
    {
        "NotRegistered",
        "TaskRevokedError",
        "TimeLimitExceeded",
        "SoftTimeLimitExceeded",
        "ChordError",
        "MaxRetriesExceededError",
        "WorkerLostError",
        "Retry",
        "Reject",
        "Ignore",
    }
)


def prepare_exception(exc: BaseException) -> dict[str, Any]:
    """An exception as Celery's JSON form."""
    cls = type(exc)
    module = cls.__module__
    if module == "nbqueue.exceptions" and cls.__qualname__ in _CELERY_NAMES:
        module = "celery.exceptions"
    return {
        "exc_type": cls.__qualname__,
        "exc_message": list(_jsonable_args(exc.args)),
        "exc_module": module,
    }


def _jsonable_args(args: tuple[Any, ...]) -> list[Any]:
    out = []
    for arg in args:
        if isinstance(arg, (str, int, float, bool, type(None))):
            out.append(arg)
        elif isinstance(arg, (list, tuple)):
            out.append(_jsonable_args(tuple(arg)))
        else:
            out.append(repr(arg))
    return out


def _lookup_class(module: str, qualname: str) -> type[BaseException] | None:
    if module in _FOREIGN_MODULES:
        cls = getattr(nbq_exceptions, qualname, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls
    obj: Any = builtins if module == "builtins" else sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def exception_to_python(value: Any) -> BaseException:
    """Rebuild an exception from its stored form (or pass an exception through)."""
    if isinstance(value, BaseException):
        return value
    if not isinstance(value, dict) or "exc_type" not in value:
        return nbq_exceptions.TaskError(value)
    module = value.get("exc_module") or "builtins"
    qualname = str(value["exc_type"])
    message = value.get("exc_message", ())
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _lookup_class(module, qualname)
    if cls is None:  # unknown here: a class of that name, so `type(e).__name__` still reads right
        key = (module, qualname)
        cls = _synthesized.get(key)
        if cls is None:
            cls = type(qualname.rsplit(".", 1)[-1], (Exception,), {"__module__": module})
            _synthesized[key] = cls
    try:
        return cls(*args)
    except Exception:
        exc = Exception.__new__(cls)
        exc.args = args
        return exc


class Backend:
    """Base result backend: meta encoding, the SUCCESS rule, waiting for ready states."""

    #: whether values are kept as Python objects (memory) or must be encoded (Redis)
    keeps_objects = False

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url
        self._listeners: tuple[Any, ...] = ()

    # listeners: progress models and widgets learn of state changes without polling ------
    def add_listener(self, listener: Any) -> Any:
        """Call ``listener(task_id, meta)`` after every stored state; returns an unsubscribe."""
        self._listeners = (*self._listeners, listener)

        def remove() -> None:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

        return remove

    def _notify(self, task_id: str, meta: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(task_id, meta)
            except Exception:
                logger.exception("result listener %r failed", listener)

    # storage primitives: subclasses implement ----------------------------------------
    def _get(self, task_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _set(self, task_id: str, meta: dict[str, Any], state: str) -> None:
        raise NotImplementedError

    def _delete(self, task_id: str) -> None:
        raise NotImplementedError

    def _wait(
        self, task_id: str, timeout: float | None, seen: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Return `task_id`'s meta as soon as it differs from `seen` (at once if it already
        does); ``None`` when `timeout` passes first."""
        raise NotImplementedError

    # public API -----------------------------------------------------------------------
    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        *,
        traceback: str | None = None,
        request: Any = None,
    ) -> dict[str, Any]:
        """Record `state` for `task_id`; a stored SUCCESS is never overwritten."""
        meta = self._build_meta(task_id, result, state, traceback, request)
        previous = self._get(task_id)
        if previous is not None and previous.get("status") == states.SUCCESS:
            return previous
        self._set(task_id, meta, state)
        if self._listeners:
            self._notify(task_id, meta)
        return meta

    def _build_meta(
        self, task_id: str, result: Any, state: str, traceback: str | None, request: Any
    ) -> dict[str, Any]:
        if state in states.EXCEPTION_STATES and isinstance(result, BaseException):
            result = result if self.keeps_objects else prepare_exception(result)
        meta: dict[str, Any] = {
            "status": state,
            "result": result,
            "traceback": traceback,
            "children": self._children(request),
            "date_done": (
                datetime.now(timezone.utc).isoformat() if state in states.READY_STATES else None
            ),
        }
        if request is not None:
            if getattr(request, "group", None):
                meta["group_id"] = request.group
            if getattr(request, "parent_id", None):
                meta["parent_id"] = request.parent_id
            if self.app.conf.result_extended:
                meta.update(
                    name=getattr(request, "task", None),
                    args=list(getattr(request, "args", None) or ()),
                    kwargs=getattr(request, "kwargs", None),
                    worker=getattr(request, "hostname", None),
                    retries=getattr(request, "retries", 0),
                    queue=(getattr(request, "delivery_info", None) or {}).get("routing_key"),
                )
        meta["task_id"] = task_id  # last, as Celery writes it: encoded without reordering
        return meta

    @staticmethod
    def _children(request: Any) -> list[Any]:
        children = getattr(request, "children", None) or ()
        return [child.as_tuple() for child in children]

    def get_meta(self, task_id: str) -> dict[str, Any]:
        """The stored meta, or a PENDING meta when nothing is stored."""
        meta = self._get(task_id)
        if meta is None:
            return {
                "status": states.PENDING,
                "result": None,
                "traceback": None,
                "children": [],
                "date_done": None,
                "task_id": task_id,
            }
        return meta

    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        """Block until `task_id` is in a ready state; `TimeoutError` after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        meta = self.get_meta(task_id)
        while meta["status"] not in states.READY_STATES:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"task {task_id} not ready after {timeout} s")
            # wake at least every `interval` s: a Ctrl-C (or kernel interrupt) that another
            # thread received runs its handler only when the main thread wakes up
            pause = interval if remaining is None else min(remaining, interval)
            found = self._wait(task_id, pause, meta)
            if found is not None:
                meta = found
        return meta

    def forget(self, task_id: str) -> None:
        self._delete(task_id)

    def on_task_call(self, task_id: str) -> None:
        """Called before a task is sent, so a waiter never misses its result."""

    def watch(self, task_id: str) -> None:
        """Have listeners told of `task_id`'s states even if it was not sent from here."""

    # groups ---------------------------------------------------------------------------
    def save_group(self, group_id: str, result: Any) -> None:
        self._set(
            f"group:{group_id}",
            {"status": states.SUCCESS, "result": result.as_tuple()},
            states.SUCCESS,
        )

    def restore_group(self, group_id: str) -> Any:
        meta = self._get(f"group:{group_id}")
        return None if meta is None else meta["result"]

    def delete_group(self, group_id: str) -> None:
        self._delete(f"group:{group_id}")

    # chords: the join of a header's results ------------------------------------------------
    def set_chord_size(self, group_id: str, size: int) -> None:
        """Record how many header results chord `group_id` waits for."""
        raise NotImplementedError

    def add_chord_part(
        self, group_id: str, task_id: str, index: int | None, state: str, value: Any
    ) -> list[tuple[str, str, Any]] | None:
        """Add one header result; exactly one caller gets the full, ordered list back."""
        raise NotImplementedError

    def on_chord_body_applied(self, group_id: str) -> None:
        """Called once the body of chord `group_id` was sent (after `add_chord_part` gave
        its results), so a backend can release the join's state only then."""

    def close(self) -> None:
        """Release connections and threads."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
