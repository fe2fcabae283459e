"""The monitor: queues and their depths, workers alive or offline, recent tasks.

`MonitorModel` folds Celery-shaped events into tables (no widgets, no threads: test it
with hand-made events); `MonitorView` draws it, fed by an event feed (see `feeds`).
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .. import states
from .feeds import Event, EventFeed, app_feed, worker_heartbeat
from .queues import queue_sizes
from .throttle import Throttle

__all__ = ["EventLogView", "MonitorModel", "MonitorView", "TaskRow", "WorkerRow"]

#: a worker is offline once no heartbeat came for this many of its heartbeat intervals
HEARTBEAT_EXPIRE_WINDOW = 2.0

_TASK_STATES = {
    "task-sent": states.PENDING,
    "task-received": states.RECEIVED,
    "task-started": states.STARTED,
    "task-succeeded": states.SUCCESS,
    "task-failed": states.FAILURE,
    "task-retried": states.RETRY,
    "task-revoked": states.REVOKED,
    "task-rejected": states.REJECTED,
}


@dataclass(frozen=True)
class WorkerRow:
    """What the monitor knows of one worker."""

    hostname: str
    freq: float = 2.0
    last_heartbeat: float = 0.0
    active: int = 0
    processed: int = 0
    offline: bool = False

    def alive(self, now: float) -> bool:
        return not self.offline and now < self.last_heartbeat + self.freq * HEARTBEAT_EXPIRE_WINDOW


@dataclass(frozen=True)
class TaskRow:
    """The latest known state of one task."""

    uuid: str
    state: str
    name: str = ""
    hostname: str = ""
    updated: float = 0.0
    info: str = ""


@dataclass
class MonitorModel:
    """Workers and recent tasks, folded from events; `clock` is injectable for tests."""

    max_tasks: int = 50
    clock: Callable[[], float] = time.monotonic
    workers: dict[str, WorkerRow] = field(default_factory=dict)
    tasks: OrderedDict[str, TaskRow] = field(default_factory=OrderedDict)
    events_seen: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        """Fold one event (a ``task.multi`` list is several events)."""
        if isinstance(event, list):
            for item in event:
                self.on_event(item)
            return
        type_ = str(event.get("type", ""))
        with self._lock:
            self.events_seen += 1
            if type_.startswith("worker-"):
                self._on_worker(type_, event)
            elif type_ in _TASK_STATES:
                self._on_task(_TASK_STATES[type_], event)

    def _on_worker(self, type_: str, event: Event) -> None:
        hostname = str(event.get("hostname"))
        row = self.workers.get(hostname) or WorkerRow(hostname)
        if type_ == "worker-offline":
            self.workers[hostname] = replace(row, offline=True)
            return
        self.workers[hostname] = replace(
            row,
            freq=float(event.get("freq") or row.freq),
            last_heartbeat=self.clock(),
            active=int(event.get("active", row.active) or 0),
            processed=int(event.get("processed", row.processed) or 0),
            offline=False,
        )

    def _on_task(self, state: str, event: Event) -> None:
        uuid = str(event.get("uuid"))
        row = self.tasks.pop(uuid, None) or TaskRow(uuid, state)
        if row.state in states.READY_STATES and state not in states.READY_STATES:
            state = row.state  # a late "started" never undoes a finished task
        info = event.get("result") or event.get("exception") or row.info
        self.tasks[uuid] = replace(
            row,
            state=state,
            name=str(event.get("name") or row.name),
            hostname=str(event.get("hostname") or row.hostname),
            updated=self.clock(),
            info=str(info),
        )
        while len(self.tasks) > self.max_tasks:
            self.tasks.popitem(last=False)

    def snapshot(self) -> tuple[list[tuple[WorkerRow, bool]], list[TaskRow]]:
        """Workers with their liveness now, and recent tasks (newest first)."""
        now = self.clock()
        with self._lock:
            workers = [(w, w.alive(now)) for w in self.workers.values()]
            tasks = list(reversed(self.tasks.values()))
        return workers, tasks


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table class='nbqueue-table'><tr>{head}</tr>{body}</table>"


class MonitorView:
    """A live monitor of an app: queue depths, workers (alive from heartbeats), recent tasks.

    ``feed`` gives events (default: `app_feed`); in-process workers of the app are also
    seen directly, once a `tick` (each second, on a thread this view owns).
    """

    def __init__(
        self,
        app: Any,
        *,
        feed: EventFeed | None = None,
        model: MonitorModel | None = None,
        queues: Callable[[], dict[str, int]] | None = None,
        rate: float = 20.0,
        tick: float | None = 1.0,
    ) -> None:
        import ipywidgets as widgets

        self.app = app
        self.model = model or MonitorModel()
        self._queues = queues or (lambda: queue_sizes(app))
        self.queues = widgets.HTML()
        self.workers = widgets.HTML()
        self.tasks = widgets.HTML()
        self.widget = widgets.VBox([self.queues, self.workers, self.tasks])
        self._throttle = Throttle(self._redraw, rate=rate, name="nbqueue-monitor")
        self._unsubscribe = (feed or app_feed(app))(self._on_event)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if tick:
            self._ticker = threading.Thread(
                target=self._tick_loop, args=(tick,), name="nbqueue-monitor-tick", daemon=True
            )
            self._ticker.start()
        self.tick()

    def _on_event(self, event: Event) -> None:
        self.model.on_event(event)
        self._throttle.poke()

    def tick(self) -> None:
        """See the app's running in-process workers, and redraw (liveness changes with time)."""
        for worker in self.app.workers:
            if worker.status == "running":
                self.model.on_event(worker_heartbeat(worker))
        self._throttle.poke()

    def _tick_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.tick()

    def _redraw(self) -> None:
        self.queues.value = self.queues_html()
        self.workers.value = self.workers_html()
        self.tasks.value = self.tasks_html()

    def queues_html(self) -> str:
        try:
            sizes = self._queues()
        except Exception as exc:  # a broker that is down shows as such, never kills the view
            return f"<b>queues</b>: unavailable ({html.escape(repr(exc))})"
        return "<b>queues</b>" + _table(["queue", "waiting"], [[q, n] for q, n in sizes.items()])

    def workers_html(self) -> str:
        workers, _ = self.model.snapshot()
        rows = [
            [w.hostname, "alive" if alive else "offline", w.active, w.processed]
            for w, alive in workers
        ]
        return "<b>workers</b>" + _table(["worker", "status", "active", "processed"], rows)

    def tasks_html(self) -> str:
        _, tasks = self.model.snapshot()
        rows = [[t.uuid[:8], t.name, t.state, t.hostname, t.info[:60]] for t in tasks]
        return "<b>recent tasks</b>" + _table(["id", "task", "state", "worker", "info"], rows)

    def close(self) -> None:
        """Stop listening and ticking."""
        self._unsubscribe()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5.0)
        self._throttle.close()

    def __repr__(self) -> str:
        workers, tasks = self.model.snapshot()
        alive = sum(1 for _, a in workers if a)
        return (
            f"<Monitor {self.app.main}: {alive}/{len(workers)} workers alive, {len(tasks)} tasks>"
        )

    def _repr_html_(self) -> str:
        return f"<div>{self.queues_html()}{self.workers_html()}{self.tasks_html()}</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle.update({"text/plain": repr(self), "text/html": self._repr_html_()})
        return bundle


#: seconds within which the same event from the signal and broker feeds is one event
_SAME_EVENT = 2.0


class EventLogView:
    """``%nbqueue events``: the last `size` events, newest last, live.

    ``feed`` defaults to the app's signals (its in-process workers, every task event) and,
    where the app has an events receiver, the broker's events; an event both report (same
    type, host and task within `_SAME_EVENT` seconds) is shown once.
    ``%nbqueue events --broker`` follows the broker's events only (every worker).
    """

    def __init__(self, app: Any, *, feed: EventFeed | None = None, size: int = 30) -> None:
        import ipywidgets as widgets

        self.app = app
        self.lines: deque[str] = deque(maxlen=size)
        self._seen: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()
        self.log = widgets.HTML()
        self.widget = self.log
        self._throttle = Throttle(self._redraw, name="nbqueue-events")
        self._unsubscribe = (feed or app_feed(app))(self._on_event)
        self._throttle.flush()

    def _on_event(self, event: Event) -> None:
        for item in event if isinstance(event, list) else [event]:
            line = _event_line(item)
            with self._lock:
                if not self._repeated(item):
                    self.lines.append(line)
        self._throttle.poke()

    def _repeated(self, event: Event) -> bool:
        """Whether the other feed already reported this event (heartbeats always count)."""
        if event.get("type") == "worker-heartbeat":
            return False
        now = time.monotonic()
        if len(self._seen) > 1000:
            self._seen = {k: t for k, t in self._seen.items() if now - t < _SAME_EVENT}
        key = (event.get("type"), event.get("hostname"), event.get("uuid"))
        before = self._seen.get(key)
        self._seen[key] = now
        return before is not None and now - before < _SAME_EVENT

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines) or "(no events yet)"

    def _redraw(self) -> None:
        self.log.value = f"<pre>{html.escape(self.text())}</pre>"

    def close(self) -> None:
        """Stop listening; the log shows every event it received, the last ones too."""
        self._unsubscribe()
        self._throttle.flush()
        self._throttle.close()

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.text())}</pre>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle.update({"text/plain": repr(self), "text/html": self._repr_html_()})
        return bundle


def _event_line(event: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(float(event.get("timestamp") or 0)))
    extra = " ".join(
        f"{k}={event[k]}" for k in ("uuid", "name", "result", "exception") if event.get(k)
    )
    return f"{stamp} {event.get('type')} {event.get('hostname')} {extra}".rstrip()
