"""An in-memory picture of a cluster built from its events: workers and tasks.

Feed it every event (``EventReceiver(app, handlers={"*": state.event})``). A worker is
*alive* while its last heartbeat is younger than twice its heartbeat interval (Celery's
200 % window); a ``worker-offline`` event marks it offline at once. A task's state follows
Celery's precedence, so events that arrive out of order (a ``task-received`` after its
``task-succeeded``) never move a task backwards. Thread-safe: a receiver thread writes,
widgets and CLIs read.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .. import states

__all__ = ["HEARTBEAT_EXPIRE_WINDOW", "State", "TaskInfo", "WorkerInfo"]

logger = logging.getLogger(__name__)

#: a worker is alive until ``last heartbeat + freq × window``
HEARTBEAT_EXPIRE_WINDOW = 2.0
#: seconds between a worker's clock and ours before we warn (once per worker)
HEARTBEAT_DRIFT_MAX = 16
_MAX_HEARTBEATS = 4

TASK_EVENT_TO_STATE = {
    "sent": states.PENDING,
    "received": states.RECEIVED,
    "started": states.STARTED,
    "failed": states.FAILURE,
    "retried": states.RETRY,
    "succeeded": states.SUCCESS,
    "revoked": states.REVOKED,
    "rejected": states.REJECTED,
}
#: fields a ``task-received`` keeps even when it arrives after a later event
_RECEIVED_KEEPS = frozenset(
    {"name", "args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires"}
)
#: event fields that describe the sender, not the worker or task
_ENVELOPE = frozenset({"type", "utcoffset", "local_received"})
#: event fields a worker takes as its own (and every ``sw_*`` one)
_WORKER_FIELDS = frozenset({"pid", "freq", "clock", "active", "processed", "loadavg"})


class WorkerInfo:
    """What the events say about one worker."""

    def __init__(self, hostname: str, *, freq: float = 60.0) -> None:
        self.hostname = hostname
        self.pid: int | None = None
        self.freq = freq
        self.clock = 0
        self.active: int | None = None
        self.processed: int | None = None
        self.loadavg: list[float] | None = None
        self.sw_ident: str | None = None
        self.sw_ver: str | None = None
        self.sw_sys: str | None = None
        self.heartbeats: list[float] = []
        self._drift_warned = False

    def on_event(self, subject: str, event: dict[str, Any]) -> None:
        """Apply a ``worker-<subject>`` event (or a task event, which counts as a heartbeat)."""
        for key, value in event.items():
            if key in _WORKER_FIELDS or key[:3] == "sw_":
                setattr(self, key, value)
        if subject == "offline":
            self.heartbeats.clear()
            return
        received, timestamp = event.get("local_received"), event.get("timestamp")
        if not received or not timestamp:
            return
        if abs(received - timestamp) > HEARTBEAT_DRIFT_MAX and not self._drift_warned:
            self._drift_warned = True
            logger.warning(
                "clock of %s is %.0f s off ours; check its time sync",
                self.hostname,
                received - timestamp,
            )
        heartbeats = self.heartbeats
        if heartbeats and received < heartbeats[-1]:
            bisect.insort(heartbeats, received)
        else:
            heartbeats.append(received)  # the usual case: already in order
        if len(heartbeats) > _MAX_HEARTBEATS:
            del heartbeats[:-_MAX_HEARTBEATS]

    @property
    def heartbeat_expires(self) -> float | None:
        if not self.heartbeats:
            return None
        return self.heartbeats[-1] + float(self.freq) * HEARTBEAT_EXPIRE_WINDOW

    def is_alive(self, now: float | None = None) -> bool:
        expires = self.heartbeat_expires
        return expires is not None and (time.time() if now is None else now) < expires

    @property
    def alive(self) -> bool:
        return self.is_alive()

    @property
    def status_string(self) -> str:
        return "ONLINE" if self.alive else "OFFLINE"

    @property
    def id(self) -> str:
        return f"{self.hostname}.{self.pid}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "pid": self.pid,
            "alive": self.alive,
            "freq": self.freq,
            "clock": self.clock,
            "active": self.active,
            "processed": self.processed,
            "loadavg": self.loadavg,
            "sw_ident": self.sw_ident,
            "sw_ver": self.sw_ver,
            "sw_sys": self.sw_sys,
            "last_heartbeat": self.heartbeats[-1] if self.heartbeats else None,
        }

    def __repr__(self) -> str:
        return f"<WorkerInfo {self.hostname} ({self.status_string} clock:{self.clock})>"


class TaskInfo:
    """What the events say about one task."""

    _FIELDS = (
        "uuid",
        "name",
        "state",
        "received",
        "sent",
        "started",
        "rejected",
        "succeeded",
        "failed",
        "retried",
        "revoked",
        "args",
        "kwargs",
        "eta",
        "expires",
        "retries",
        "result",
        "exception",
        "timestamp",
        "runtime",
        "traceback",
        "exchange",
        "routing_key",
        "clock",
        "client",
        "root_id",
        "parent_id",
    )

    def __init__(self, uuid: str) -> None:
        self.__dict__.update(_TASK_DEFAULTS)  # every field None, in one step
        self.uuid = uuid
        self.state = states.PENDING
        self.clock = 0
        self.worker: WorkerInfo | None = None
        self.extra: dict[str, Any] = {}

    def on_event(self, subject: str, event: dict[str, Any]) -> None:
        """Apply a ``task-<subject>`` event, honouring Celery's state precedence."""
        state = TASK_EVENT_TO_STATE.get(subject)
        timestamp = event.get("timestamp")
        if state is None:
            state = subject.upper()  # a custom state, e.g. task-progress → PROGRESS
        else:
            setattr(self, subject, timestamp)
        fields = {k: v for k, v in event.items() if k not in _ENVELOPE}
        older = (
            state != states.RETRY
            and self.state != states.RETRY
            and states.precedence(state) > states.precedence(self.state)
        )
        if older:  # happened before what we know: keep only what that event owns
            keep = _RECEIVED_KEEPS if state == states.RECEIVED else frozenset()
            fields = {k: v for k, v in fields.items() if k in keep}
        else:
            fields.update(state=state, timestamp=timestamp)
        for key, value in fields.items():
            if key in _TASK_FIELDS:
                setattr(self, key, value)
            elif key not in ("hostname", "pid"):
                self.extra[key] = value

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self._FIELDS}
        data["worker"] = self.worker.hostname if self.worker is not None else None
        data.update(self.extra)
        return data

    def __repr__(self) -> str:
        return f"<TaskInfo {self.name}[{self.uuid}] {self.state}>"


_TASK_FIELDS = frozenset(TaskInfo._FIELDS)
_TASK_DEFAULTS = dict.fromkeys(TaskInfo._FIELDS)


NodeCallback = Callable[[WorkerInfo], Any]


class State:
    """Workers and tasks of a cluster, kept up to date by `event`.

    Parameters
    ----------
    callback:
        Called as ``callback(state, event)`` for every event (Celery's signature).
    max_workers_in_memory, max_tasks_in_memory:
        Least recently updated entries are forgotten beyond these.
    on_node_join, on_node_leave:
        Called with the `WorkerInfo` when a worker appears or sends ``worker-offline``.
    """

    def __init__(
        self,
        callback: Callable[[State, dict[str, Any]], Any] | None = None,
        *,
        max_workers_in_memory: int = 5000,
        max_tasks_in_memory: int = 10000,
        on_node_join: NodeCallback | None = None,
        on_node_leave: NodeCallback | None = None,
    ) -> None:
        self.callback = callback
        self.max_workers_in_memory = max_workers_in_memory
        self.max_tasks_in_memory = max_tasks_in_memory
        self.on_node_join = on_node_join
        self.on_node_leave = on_node_leave
        self.workers: OrderedDict[str, WorkerInfo] = OrderedDict()
        self.tasks: OrderedDict[str, TaskInfo] = OrderedDict()
        self.event_count = 0
        self.task_count = 0
        self.version = 0
        self._lock = threading.RLock()
        #: notified after every event: ``wait_for(pred, condition=state.changed)``
        self.changed = threading.Condition(self._lock)

    # feeding --------------------------------------------------------------------------
    def event(self, event: dict[str, Any]) -> tuple[tuple[Any, bool] | None, str]:
        """Apply one event; returns ``((worker or task, created), subject)``."""
        group, _, subject = event.get("type", "").partition("-")
        notify: list[tuple[NodeCallback, WorkerInfo]] = []
        with self._lock:
            self.event_count += 1
            result: tuple[Any, bool] | None = None
            if group == "worker":
                result = self._worker_event(subject, event, notify)
            elif group == "task":
                result = self._task_event(subject, event)
            self.version += 1
            self.changed.notify_all()
        for hook, worker in notify:
            _call(hook, worker)
        if self.callback is not None:
            _call(self.callback, self, event)
        return result, subject

    def _worker_event(
        self, subject: str, event: dict[str, Any], notify: list[tuple[NodeCallback, WorkerInfo]]
    ) -> tuple[WorkerInfo, bool] | None:
        hostname = event.get("hostname")
        if not hostname or subject in ("elect", "elect-ack"):
            return None
        worker, created = self._get_worker(hostname)
        worker.on_event(subject, event)
        if self.on_node_join is not None and (created or subject == "online"):
            notify.append((self.on_node_join, worker))
        if self.on_node_leave is not None and subject == "offline":
            notify.append((self.on_node_leave, worker))
        return worker, created

    def _get_worker(self, hostname: str) -> tuple[WorkerInfo, bool]:
        worker = self.workers.get(hostname)
        if worker is not None:
            self.workers.move_to_end(hostname)
            return worker, False
        worker = self.workers[hostname] = WorkerInfo(hostname)
        while len(self.workers) > self.max_workers_in_memory:
            self.workers.popitem(last=False)
        return worker, True

    def _task_event(self, subject: str, event: dict[str, Any]) -> tuple[TaskInfo, bool] | None:
        uuid, hostname = event.get("uuid"), event.get("hostname")
        if not uuid or not hostname:
            logger.error("ignored a task event without uuid or hostname: %.200r", event)
            return None
        task = self.tasks.get(uuid)
        created = task is None
        if task is None:
            task = self.tasks[uuid] = TaskInfo(uuid)
            while len(self.tasks) > self.max_tasks_in_memory:
                self.tasks.popitem(last=False)
        else:
            self.tasks.move_to_end(uuid)
        if subject == "sent":
            task.client = hostname
        else:
            worker, _ = self._get_worker(hostname)
            worker.on_event("task", event)
            task.worker = worker
        if subject == "received":
            self.task_count += 1
        task.on_event(subject, event)
        return task, created

    # reading --------------------------------------------------------------------------
    def alive_workers(self, now: float | None = None) -> list[WorkerInfo]:
        """Workers whose last heartbeat is recent enough (`now` for tests)."""
        with self._lock:
            return [w for w in self.workers.values() if w.is_alive(now)]

    def tasks_in_state(self, state: str) -> list[TaskInfo]:
        with self._lock:
            return [t for t in self.tasks.values() if t.state == state]

    def counts(self) -> dict[str, int]:
        """Number of tasks per state."""
        out: dict[str, int] = {}
        with self._lock:
            for task in self.tasks.values():
                out[task.state] = out.get(task.state, 0) + 1
        return out

    def tasks_by_time(self, limit: int | None = None, reverse: bool = True) -> list[TaskInfo]:
        """Tasks ordered by their last event's timestamp, newest first by default."""
        with self._lock:
            ordered = sorted(self.tasks.values(), key=lambda t: t.timestamp or 0, reverse=reverse)
        return ordered[:limit] if limit is not None else ordered

    def tasks_by_type(self, name: str, limit: int | None = None) -> list[TaskInfo]:
        return [t for t in self.tasks_by_time() if t.name == name][:limit]

    def tasks_by_worker(self, hostname: str, limit: int | None = None) -> list[TaskInfo]:
        return [t for t in self.tasks_by_time() if t.worker and t.worker.hostname == hostname][
            :limit
        ]

    def task_types(self) -> list[str]:
        with self._lock:
            return sorted({t.name for t in self.tasks.values() if t.name})

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Plain data for renderers: workers (alive or not), task counts per state."""
        with self._lock:
            workers = []
            for worker in self.workers.values():
                row = worker.as_dict()
                row["alive"] = worker.is_alive(now)
                workers.append(row)
            return {
                "workers": workers,
                "tasks": self.counts(),
                "event_count": self.event_count,
                "task_count": self.task_count,
            }

    def clear(self, ready: bool = True) -> None:
        """Forget every worker and task (only finished tasks when ``ready``)."""
        with self._lock:
            if ready:
                for uuid in [u for u, t in self.tasks.items() if t.ready]:
                    del self.tasks[uuid]
            else:
                self.tasks.clear()
                self.workers.clear()
            self.version += 1

    def forget_workers(self, hostnames: Iterable[str]) -> None:
        with self._lock:
            for hostname in hostnames:
                self.workers.pop(hostname, None)
            self.version += 1

    def __repr__(self) -> str:
        return f"<State: workers={len(self.workers)} tasks={len(self.tasks)}>"


def _call(fun: Callable[..., Any], *args: Any) -> None:
    try:
        fun(*args)
    except Exception:
        logger.exception("events state callback %r failed", fun)
