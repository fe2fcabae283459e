"""The process pool (``pool="processes"``): CPU-bound task functions run in child processes.

Where things run — the split a reviewer needs to know:

* A **slot thread** in the worker process (``nbqueue-<worker>-pool-N``) takes a request
  from the pool's queue and runs ``request.execute()`` as a thread pool would: the
  acknowledgement, ``execution.run_task`` (request context, signals, hooks, state
  storage, callbacks, chains, chords) and the events all stay in the worker process,
  on the one execution path.
* Only the call of the task *function* crosses to the slot's **child process** (a fresh
  interpreter, never a fork of the kernel; see `nbqueue.worker.slot`): the request's
  task is swapped for a proxy whose ``__call__`` sends the function, the arguments and
  the request's fields as signed cloudpickle and waits for the outcome, raising the
  child's exception (with its traceback as the cause) just as a local call would.
* Time limits are enforced here: the soft limit sends the child SIGUSR1 (raising
  `SoftTimeLimitExceeded` in the task), the hard limit kills the child and raises
  `TimeLimitExceeded`. A child that dies raises `WorkerLostError` for its task (a
  failure, or a requeue under ``acks_late`` + ``reject_on_worker_lost``) and is replaced.
"""

from __future__ import annotations

import logging
import os
import queue
import signal as signals
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

import cloudpickle

from ..exceptions import ConfigurationError, RemoteTraceback, TimeLimitExceeded
from ..task import Task
from .limits import resolve_time_limits
from .pools import STOP, QueuedPool
from .slot import ChildGone, Slot

__all__ = ["ProcessPool"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
_PROXY_CACHE = 256
#: task methods a child may run in the parent through `ChildTask`
_RELAYED = frozenset({"update_state", "retry"})
#: request fields a child does not get: sent once as the call's arguments, or parent-only
_NOT_SENT = frozenset({"args", "kwargs", "children"})


class ProcessPool(QueuedPool):
    """`size` child processes fed from one queue, each driven by a slot thread.

    Same interface as the thread pool (``submit``, ``grow``, ``shrink``, ``stop``,
    ``info``, ``flush_pending``) plus `terminate_job` and per-child time limits.
    """

    #: limits are enforced here (the child is signalled or killed), not by the thread timers
    enforces_time_limits = True

    implementation = "nbqueue.worker.processes:ProcessPool"

    def __init__(self, name: str, size: int, *, worker: Any) -> None:
        if os.name != "posix":
            raise ConfigurationError("pool='processes' needs a POSIX system; use 'threads'")
        if size < 1:
            raise ValueError(f"a process pool needs at least one process, not {size}")
        self.name = name
        self.size = size
        self.worker = worker
        self.key = worker.app.secret_key
        self.busy = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._slots: dict[int, Slot] = {}
        self._lock = threading.Lock()
        self._serial = 0
        self._closing = False
        self._local = threading.local()
        self._proxies: OrderedDict[type[Task], Task] = OrderedDict()
        self._blobs: OrderedDict[Any, bytes] = OrderedDict()

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every child and wait until each is ready (a broken environment fails here)."""
        self._closing = False
        ready = [self._spawn() for _ in range(self.size)]
        for event, errors in ready:
            if not event.wait(_START_TIMEOUT + 5) or errors:
                self.stop(timeout=5.0)
                raise RuntimeError(errors[0] if errors else "a pool process did not start")

    def _spawn(self) -> tuple[threading.Event, list[str]]:
        with self._lock:
            self._serial += 1
            number = self._serial
        ready, errors = threading.Event(), []
        thread = threading.Thread(
            target=self._work, args=(number, ready, errors), name=f"{self.name}-{number}"
        )
        thread.daemon = True
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return ready, errors

    def _new_slot(self, number: int) -> Slot:
        slot = Slot(f"{self.name}-process-{number}", self.key)
        slot.wait_ready(_START_TIMEOUT)
        with self._lock:
            self._slots[number] = slot
        return slot

    def _work(self, number: int, ready: threading.Event, errors: list[str]) -> None:
        try:
            slot = self._new_slot(number)
        except Exception as exc:
            self._lost_slot(exc)
            errors.append(str(exc))
            ready.set()
            return
        ready.set()
        try:
            self._serve(slot, number)
        finally:
            with self._lock:
                slot = self._slots.pop(number, slot)
            slot.close()

    def _lost_slot(self, exc: BaseException) -> None:
        logger.error("%s: could not start a child process: %s", self.name, exc)
        with self._lock:
            self.size = max(self.size - 1, 0)

    def _serve(self, slot: Slot, number: int) -> None:
        self._local.slot = slot
        get = self._queue.get
        while True:
            request = get()
            if request is STOP:
                return
            with self._lock:
                self.busy += 1
            try:
                self._execute(slot, request)
            except BaseException:
                logger.exception("%s: %r crashed outside its task", self.name, request)
            finally:
                with self._lock:
                    self.busy -= 1
            if not slot.alive():
                if self._closing:
                    return
                try:
                    slot = self._replace(slot, number)
                except Exception as exc:
                    self._lost_slot(exc)
                    return

    def _execute(self, slot: Slot, request: Any) -> None:
        request.task = self._proxy(request.task)
        request.thread = threading.current_thread()
        request.worker_pid = slot.pid
        slot.request, slot.terminated = request, None
        try:
            request.execute()
        finally:
            slot.request = None

    def _replace(self, slot: Slot, number: int) -> Slot:
        """A new child in place of one that died (its task has failed already)."""
        logger.warning(
            "%s: replacing %s (exit code %s)", self.name, slot.label, slot.process.returncode
        )
        slot.close()
        fresh = self._new_slot(number)
        self._local.slot = fresh
        return fresh

    def grow(self, n: int = 1) -> None:
        for _ in range(n):
            self._spawn()
        with self._lock:
            self.size += n

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Let running tasks finish for up to `timeout` s, then kill their children too."""
        with self._lock:
            threads = list(self._threads)
            self._closing = True
        for _ in threads:
            self._queue.put(STOP)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = list(self._slots.values())
        for slot in stuck:
            logger.warning("%s: killing %s, still busy at stop", self.name, slot.label)
            slot.kill()
        for thread in threads:
            thread.join(5.0)
        alive = [t.name for t in threads if t.is_alive()]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
        return alive

    # running a task function in the child -------------------------------------------------
    def _proxy(self, task: Task) -> Task:
        """The task as run_task sees it, except that calling it runs the child."""
        cls = type(task)
        with self._lock:
            proxy = self._proxies.get(cls)
            if proxy is None:
                pool = self
                attrs = {
                    "__call__": lambda self, *a, **kw: pool._call(self, a, kw),
                    "code_blob": lambda self: task.code_blob(),
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                }
                proxy = self._proxies[cls] = type(cls.__name__, (cls,), attrs)()
                while len(self._proxies) > _PROXY_CACHE:
                    self._proxies.popitem(last=False)
            return proxy

    def _function_blob(self, task: Task) -> bytes:
        fn = getattr(type(task), "__wrapped__", None)
        if fn is None:  # a class-based task: its run method, unbound
            fn = type(task).run
        with self._lock:
            blob = self._blobs.get(fn)
            if blob is None:
                blob = self._blobs[fn] = cloudpickle.dumps(fn)
                while len(self._blobs) > _PROXY_CACHE:
                    self._blobs.popitem(last=False)
            return blob

    def _call(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        slot: Slot = self._local.slot
        request = task.request
        fields = {k: v for k, v in request.as_dict().items() if k not in _NOT_SENT}
        bind = bool(task.bind) or getattr(type(task), "__wrapped__", None) is None
        job = slot.jobs + 1
        # pickled before the child is involved: what cannot travel fails here, child intact
        frame = slot.encode(("run", job, self._function_blob(task), args, kwargs, fields, bind))
        slot.jobs = slot.pending = job
        try:
            slot.post(frame)
            return self._await(slot, task, job, *self.limits(task, request))
        except ChildGone:
            slot.pending = None
            raise slot.lost() from None
        except BaseException:
            if slot.pending is not None:  # interrupted while the child still runs the job
                slot.pending = None
                slot.kill()
            raise

    def _await(
        self, slot: Slot, task: Task, job: int, hard: float | None, soft: float | None
    ) -> Any:
        started = time.monotonic()
        soft_at = None if soft is None else started + soft
        hard_at = None if hard is None else started + hard
        while True:
            now = time.monotonic()
            if soft_at is not None and now >= soft_at:
                soft_at = None
                slot.signal_soft_limit()
            if hard_at is not None and now >= hard_at:
                slot.pending = None
                slot.kill()
                raise TimeLimitExceeded(
                    f"{task.name}[{task.request.id}] ran past its hard time limit of {hard:g} s; "
                    "its process was killed"
                )
            deadlines = [t for t in (soft_at, hard_at) if t is not None]
            if not slot.wait(max(0.0, min(deadlines) - now) if deadlines else None):
                continue
            try:
                frame = slot.recv()
            except (EOFError, OSError):
                raise ChildGone() from None
            if frame[0] == "call":
                self._relay(slot, task, frame)
                continue
            if frame[0] == "out":  # written here, in the task's thread: routed like its own
                (sys.stdout if frame[2] == "stdout" else sys.stderr).write(frame[3])
                continue
            slot.pending = None
            return _outcome(frame)

    @staticmethod
    def _relay(slot: Slot, task: Task, frame: tuple[Any, ...]) -> None:
        """Run a task method the child asked for (``update_state``, ``retry``) here."""
        _, _, method, args, kwargs = frame
        try:
            if method not in _RELAYED:
                raise AttributeError(f"a child may not call {method!r}")
            reply = ("reply", True, getattr(task, method)(*args, **kwargs))
        except BaseException as exc:
            reply = ("reply", False, exc)
        try:
            frame = slot.encode(reply)
        except Exception as exc:
            frame = slot.encode(
                ("reply", False, TypeError(f"cannot send {method}'s answer: {exc!r}"))
            )
        slot.post(frame)

    def limits(self, task: Task, request: Any) -> tuple[float | None, float | None]:
        """``(hard, soft)`` seconds, resolved as for every pool (`resolve_time_limits`)."""
        return resolve_time_limits(request.timelimit, task.name, task, self.worker)

    def terminate_job(self, request: Any, signal: int | str = "SIGTERM") -> bool:
        """Kill the child running `request` with `signal`; its task ends as terminated.

        Returns False when `request` is not running in this pool.
        """
        signum = signals.Signals[signal] if isinstance(signal, str) else signals.Signals(signal)
        with self._lock:
            slots = [s for s in self._slots.values() if s.request is request]
        for slot in slots:
            slot.terminated = signum
            slot.signal(signum)
        return bool(slots)

    # introspection ------------------------------------------------------------------------
    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    @property
    def processes(self) -> list[int]:
        """Pids of the live children."""
        with self._lock:
            slots = list(self._slots.values())
        return [s.pid for s in slots if s.alive()]

    def info(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "max-concurrency": self.size,
            "processes": self.processes,
            "threads": [t.name for t in self.threads],
            "busy": self.busy,
        }


def _outcome(frame: tuple[Any, ...]) -> Any:
    """The value a ``done`` frame carries, or its exception raised with the child's traceback."""
    _, _, kind, *rest = frame
    if kind == "ok":
        return rest[0]
    exc, tb = rest
    raise exc from RemoteTraceback(tb)
