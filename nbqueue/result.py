"""Handles on results: `AsyncResult` for one task, `GroupResult` for many."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from typing import Any

from . import states
from .backends.base import exception_to_python
from .context import current_request
from .exceptions import RemoteTraceback, TimeoutError

__all__ = ["AsyncResult", "EagerResult", "GroupResult", "ResultBase", "result_from_tuple"]


def _assert_not_in_task(disable_sync_subtasks: bool) -> None:
    if disable_sync_subtasks and current_request() is not None:
        raise RuntimeError(
            "Never call result.get() within a task: it can deadlock the pool. "
            "Use a chain or chord, or pass disable_sync_subtasks=False if you are sure."
        )


def _raise_from_meta(meta: dict[str, Any]) -> None:
    exc = exception_to_python(meta.get("result"))
    tb = meta.get("traceback")
    if tb:
        raise exc from RemoteTraceback(tb)
    raise exc


class ResultBase:
    """What `AsyncResult` and `GroupResult` share."""

    parent: ResultBase | None = None


class AsyncResult(ResultBase):
    """The result of one task, looked up in the app's backend by task id."""

    def __init__(
        self,
        id: str,
        *,
        app: Any,
        task_name: str | None = None,
        parent: ResultBase | None = None,
    ) -> None:
        self.id = id
        self.app = app
        self.task_name = task_name
        self.parent = parent
        self._cache: dict[str, Any] | None = None

    @property
    def backend(self) -> Any:
        return self.app.backend

    # state ---------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_meta(self.id)
        if meta["status"] in states.READY_STATES:
            self._cache = meta
        return meta

    @property
    def state(self) -> str:
        return self._meta()["status"]

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception for a failed task, or the state's meta."""
        meta = self._meta()
        if meta["status"] in states.EXCEPTION_STATES:
            return exception_to_python(meta.get("result"))
        return meta["result"]

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta().get("traceback")

    @property
    def date_done(self) -> str | None:
        return self._meta().get("date_done")

    @property
    def children(self) -> list[ResultBase]:
        return [result_from_tuple(c, self.app) for c in self._meta().get("children") or ()]

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    # waiting ---------------------------------------------------------------------------
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        follow_parents: bool = True,
    ) -> Any:
        """Wait for the result; re-raise the task's exception (with its remote traceback).

        With `follow_parents` (Celery's default), a failed earlier step of the chain this
        result ends is raised as soon as it is seen: a step after a failure never runs.
        Raises `nbqueue.exceptions.TimeoutError` when `timeout` seconds pass first.
        """
        _assert_not_in_task(disable_sync_subtasks)
        if follow_parents and self.parent is not None:
            self._raise_parent_error()
            meta = self._cache or self._wait_following_parents(timeout, interval)
        else:
            meta = self._cache or self.backend.wait_for(self.id, timeout=timeout, interval=interval)
        self._cache = meta
        if meta["status"] in states.PROPAGATE_STATES:
            if propagate:
                _raise_from_meta(meta)
            return exception_to_python(meta.get("result"))
        return meta["result"]

    wait = get

    def _raise_parent_error(self) -> None:
        """Raise the error of the first failed step before this one (root first).

        A group's members are not looked at: a chord body reports them as `ChordError`.
        """
        node, parents = self.parent, []
        while node is not None:
            parents.append(node)
            node = node.parent
        for parent in reversed(parents):
            if isinstance(parent, AsyncResult):
                meta = parent._meta()
                if meta["status"] in states.PROPAGATE_STATES:
                    _raise_from_meta(meta)

    def _wait_following_parents(self, timeout: float | None, interval: float) -> dict[str, Any]:
        """`Backend.wait_for` in slices of `interval`, looking at the parents in between."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            pause = interval if remaining is None else min(remaining, interval)
            try:
                return self.backend.wait_for(self.id, timeout=pause, interval=interval)
            except TimeoutError:
                self._raise_parent_error()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"task {self.id} not ready after {timeout} s") from None

    def forget(self) -> None:
        """Delete the stored result."""
        self._cache = None
        self.backend.forget(self.id)

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM", **kwargs: Any) -> Any:
        """Ask every worker not to run (or, with `terminate`, to stop) this task."""
        return self.app.control.revoke(self.id, terminate=terminate, signal=signal, **kwargs)

    def as_tuple(self) -> list[Any]:
        """Celery's serialized form: ``[[id, parent_tuple], None]``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], None]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def _repr_html_(self) -> str:
        meta = self._meta()
        name = html.escape(self.task_name or meta.get("name") or "task")
        value = html.escape(repr(meta.get("result")))[:300]
        return (
            f"<div><b>{name}</b> <code>{html.escape(self.id)}</code> "
            f"<b>{html.escape(meta['status'])}</b> {value}</div>"
        )


class EagerResult(AsyncResult):
    """The result of ``Task.apply``: already known, never looked up."""

    def __init__(
        self,
        id: str,
        value: Any,
        state: str,
        *,
        app: Any,
        traceback: str | None = None,
        task_name: str | None = None,
    ) -> None:
        super().__init__(id, app=app, task_name=task_name)
        self._cache = {
            "status": state,
            "result": value,
            "traceback": traceback,
            "children": [],
            "date_done": None,
            "task_id": id,
        }

    def exception(self) -> BaseException | None:
        value = self._cache["result"] if self._cache else None
        return value if isinstance(value, BaseException) else None

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        meta = self._cache or {}
        if meta.get("status") in states.PROPAGATE_STATES and propagate:
            _raise_from_meta(meta)
        return meta.get("result")

    def forget(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<EagerResult: {self.id}>"


class GroupResult(ResultBase):
    """The results of a group of tasks, in the order they were sent."""

    def __init__(
        self,
        id: str | None,
        results: list[AsyncResult] | None = None,
        *,
        app: Any,
        parent: ResultBase | None = None,
    ) -> None:
        self.id = id
        self.results = list(results or ())
        self.app = app
        self.parent = parent

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def completed_count(self) -> int:
        """How many tasks finished successfully."""
        return sum(1 for r in self.results if r.successful())

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        """Every member's result, in order; `timeout` covers the whole group."""
        return self.join(timeout, propagate, interval, disable_sync_subtasks)

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        _assert_not_in_task(disable_sync_subtasks)
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"group {self.id} not ready after {timeout} s")
            values.append(result.get(remaining, propagate, interval, disable_sync_subtasks=False))
        return values

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM", **kwargs: Any) -> Any:
        return self.app.control.revoke(
            [r.id for r in self.results], terminate=terminate, signal=signal, **kwargs
        )

    def forget(self) -> None:
        for result in self.results:
            result.forget()
        if self.id:
            self.app.backend.delete_group(self.id)

    def save(self) -> GroupResult:
        """Store the group so `GroupResult.restore(id)` finds it later."""
        self.app.backend.save_group(self.id, self)
        return self

    @classmethod
    def restore(cls, group_id: str, *, app: Any) -> GroupResult | None:
        stored = app.backend.restore_group(group_id)
        return None if stored is None else result_from_tuple(stored, app)

    def as_tuple(self) -> list[Any]:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], [r.as_tuple() for r in self.results]]

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"


def result_from_tuple(value: Any, app: Any) -> ResultBase:
    """Rebuild a result from Celery's tuple form ``[[id, parent], members_or_None]``."""
    (result_id, parent), members = value
    parent_result = result_from_tuple(parent, app) if parent else None
    if members is not None:
        return GroupResult(
            result_id,
            [result_from_tuple(m, app) for m in members],
            app=app,
            parent=parent_result,
        )
    return AsyncResult(result_id, app=app, parent=parent_result)
