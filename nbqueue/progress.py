"""How far a result has come — one task, a group or a chord — as a model, and a terminal bar.

The model (`Progress`) listens to the result backend, so it is told of every stored state
instead of polling; renderers (the terminal bar here, the widget in ``nbqueue.jupyter``)
only draw what the model says.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from . import states
from .result import AsyncResult, GroupResult, ResultBase

__all__ = ["Progress", "Snapshot", "show_in_terminal"]


@dataclass(frozen=True)
class Snapshot:
    """Progress at one moment."""

    total: float
    done: float
    succeeded: int
    failed: int
    state: str
    elapsed: float
    phase: str = "tasks"  # "header" then "body" for a chord

    @property
    def finished(self) -> bool:
        return self.state in states.READY_STATES


def _leaves(result: ResultBase) -> tuple[list[str], str | None]:
    """Ids to count, and the id of a chord body (counted after its header)."""
    if isinstance(result, GroupResult):
        return [r.id for r in result.results], None
    if isinstance(result, AsyncResult) and isinstance(result.parent, GroupResult):
        return [r.id for r in result.parent.results], result.id  # a chord
    assert isinstance(result, AsyncResult)
    return [result.id], None


class Progress:
    """Counts of a result's tasks, kept current by the backend's notifications."""

    def __init__(self, result: ResultBase, *, on_change: Callable[[], None] | None = None) -> None:
        self.result = result
        #: called (from whichever thread stored the state) after each change it counts
        self.on_change = on_change
        backend = result.app.backend
        self.backend = backend
        self.ids, self.body_id = _leaves(result)
        self._watched = {*self.ids, *([self.body_id] if self.body_id else [])}
        self._metas: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._version = 0
        self.started = time.monotonic()
        self._remove = backend.add_listener(self._on_state)
        for task_id in self._watched:  # what was stored before we listened
            backend.watch(task_id)  # a result backend in another process reports it too
            meta = backend.get_meta(task_id)
            with self._cond:  # a state the listener already delivered is newer than `meta`
                self._metas.setdefault(task_id, meta)

    def _on_state(self, task_id: str, meta: dict[str, Any]) -> None:
        if task_id in self._watched:
            with self._cond:
                self._metas[task_id] = meta
                self._version += 1
                self._cond.notify_all()
            if self.on_change is not None:
                self.on_change()

    def snapshot(self) -> Snapshot:
        with self._cond:
            metas = [self._metas.get(i, {}) for i in self.ids]
            body = self._metas.get(self.body_id, {}) if self.body_id else None
        statuses = [m.get("status", states.PENDING) for m in metas]
        succeeded = statuses.count(states.SUCCESS)
        failed = sum(1 for s in statuses if s in states.PROPAGATE_STATES)
        elapsed = time.monotonic() - self.started
        if len(metas) == 1 and body is None:
            meta = metas[0]
            info = meta.get("result") if statuses[0] == states.PROGRESS else None
            if isinstance(info, dict) and info.get("total"):
                done = float(info.get("current") or 0)
                return Snapshot(float(info["total"]), done, succeeded, failed, statuses[0], elapsed)
            return Snapshot(1, succeeded + failed, succeeded, failed, statuses[0], elapsed)
        done = succeeded + failed
        if body is not None:
            body_state = body.get("status", states.PENDING)
            phase = "body" if done == len(metas) else "header"
            return Snapshot(
                len(metas) + 1,
                done + (body_state in states.READY_STATES),
                succeeded,
                failed,
                body_state,
                elapsed,
                phase,
            )
        state = (
            states.SUCCESS
            if succeeded == len(metas)
            else (states.FAILURE if failed and done == len(metas) else states.STARTED)
        )
        return Snapshot(len(metas), done, succeeded, failed, state, elapsed)

    def wait(self, timeout: float | None = None) -> Snapshot:
        """Wait until something changes (or `timeout`), then return a snapshot."""
        with self._cond:
            seen = self._version
            self._cond.wait_for(lambda: self._version != seen, timeout)
        return self.snapshot()

    def close(self) -> None:
        self._remove()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def show_in_terminal(
    result: ResultBase,
    *,
    timeout: float | None = None,
    file: TextIO | None = None,
    description: str = "",
) -> Snapshot:
    """Draw a tqdm bar until `result` is ready (or `timeout`); returns the last snapshot."""
    from tqdm import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(result) as progress:
        snap = progress.snapshot()
        with tqdm(
            total=snap.total,
            desc=description or None,
            file=file or sys.stderr,
            unit="task",
            dynamic_ncols=True,
        ) as bar:
            while True:
                bar.total = snap.total
                bar.set_postfix(ok=snap.succeeded, failed=snap.failed, refresh=False)
                bar.update(snap.done - bar.n)  # tqdm throttles redraws (mininterval)
                if snap.finished and (snap.phase != "header"):
                    bar.refresh()
                    return snap
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return snap
                snap = progress.wait(0.5 if remaining is None else min(0.5, remaining))
