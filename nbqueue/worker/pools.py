"""Execution pools: threads (default) and solo (in the loop thread)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

__all__ = ["STOP", "QueuedPool", "SoloPool", "ThreadPool", "pool_class"]

logger = logging.getLogger(__name__)

#: put on a pool's queue: the thread that takes it exits
STOP = object()


class QueuedPool:
    """What the thread and process pools share: one queue of requests taken by their
    threads, and `STOP` markers that make threads exit (subclasses set the attributes)."""

    _queue: queue.SimpleQueue[Any]
    _lock: threading.Lock
    size: int

    def submit(self, request: Any) -> None:
        self._queue.put(request)

    def flush_pending(self) -> list[Any]:
        """Take back every request not started yet, in the order they were submitted."""
        pending = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return pending
            if item is not STOP:
                pending.append(item)

    def shrink(self, n: int = 1) -> None:
        """Let `n` threads exit once their current task is done (one always stays)."""
        with self._lock:
            n = min(n, self.size - 1)
            self.size -= n
        for _ in range(max(n, 0)):
            self._queue.put(STOP)


class ThreadPool(QueuedPool):
    """A fixed (or autoscaled) number of named daemon threads taking requests from a queue.

    A thread whose task was given up (hard time limit, terminate) is *replaced*: a new
    thread takes its place in the pool at once, and the old one exits once its task
    code returns (see `replace`).
    """

    implementation = "nbqueue.worker.pools:ThreadPool"
    #: abandoned threads can be replaced, so limits and terminate free the slot at once
    can_replace = True
    #: how long a stop waits for abandoned threads (blocked in C code, they may never end)
    abandoned_grace = 1.0

    def __init__(self, name: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"a thread pool needs at least one thread, not {size}")
        self.name = name
        self.size = size
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._abandoned: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._serial = 0
        self.busy = 0
        self.replaced = 0

    def start(self) -> None:
        with self._lock:
            for _ in range(self.size):
                self._spawn()

    def _spawn(self, first: Any = None) -> None:
        self._serial += 1
        thread = threading.Thread(
            target=self._work, args=(first,), name=f"{self.name}-{self._serial}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self, first: Any = None) -> None:
        if first is not None:
            _call_safely(first)
        get = self._queue.get
        while True:
            request = get()
            if request is STOP:
                return
            with self._lock:
                self.busy += 1
            try:
                request.thread = threading.current_thread()
                request.execute()
            except BaseException:
                logger.exception("pool thread: %r crashed outside its task", request)
            if request.abandoned:  # replaced: the slot (and the busy count) went on without us
                return
            with self._lock:
                self.busy -= 1

    def replace(self, thread: threading.Thread, first: Any = None) -> None:
        """Give up `thread` (busy with an abandoned task): a new thread takes its slot and
        first calls `first()`; the old one exits when its task code returns."""
        with self._lock:
            if thread in self._threads:
                self._threads.remove(thread)
            self._abandoned = [t for t in self._abandoned if t.is_alive()]
            self._abandoned.append(thread)
            self.busy -= 1
            self.replaced += 1
            self._spawn(first)

    def grow(self, n: int = 1) -> None:
        with self._lock:
            for _ in range(n):
                self._spawn()
            self.size += n

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Ask every thread to exit after its current task; return the names still alive.

        Abandoned threads get `abandoned_grace` seconds more: a thread blocked in C code
        exits only when that call returns, which may be never.
        """
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(STOP)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:  # given up already: a short grace to exit, no more
            abandoned = list(self._abandoned)
        grace = time.monotonic() + min(timeout, self.abandoned_grace)
        for thread in abandoned:
            thread.join(max(0.0, grace - time.monotonic()))
        waited = threads + abandoned
        alive = [t.name for t in waited if t.is_alive()]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return alive

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def info(self) -> dict[str, Any]:
        with self._lock:
            abandoned = [t.name for t in self._abandoned if t.is_alive()]
        return {
            "implementation": self.implementation,
            "max-concurrency": self.size,
            "threads": [t.name for t in self.threads],
            "busy": self.busy,
            "replaced": self.replaced,
            "abandoned": abandoned,
        }


def _call_safely(fun: Any) -> None:
    try:
        fun()
    except BaseException:
        logger.exception("pool thread: %r failed", fun)


class SoloPool:
    """Runs each request right away in the loop thread: one task at a time."""

    implementation = "nbqueue.worker.pools:SoloPool"
    size = 1
    #: the loop thread cannot be replaced: a hard limit or terminate only raises in it
    can_replace = False

    def __init__(self, name: str, size: int = 1) -> None:
        self.name = name
        self.busy = 0

    def start(self) -> None:
        pass

    def submit(self, request: Any) -> None:
        self.busy = 1
        try:
            request.thread = threading.current_thread()
            request.execute()
        finally:
            self.busy = 0

    def flush_pending(self) -> list[Any]:
        return []

    def stop(self, timeout: float = 10.0) -> list[str]:
        return []

    def info(self) -> dict[str, Any]:
        return {"implementation": self.implementation, "max-concurrency": 1, "busy": self.busy}


def pool_class(name: str) -> type[ThreadPool] | type[SoloPool]:
    pools: dict[str, Any] = {"threads": ThreadPool, "solo": SoloPool}
    try:
        return pools[name]
    except KeyError:
        known = sorted([*pools, "processes"])  # processes: nbqueue.worker.processes
        raise ValueError(f"unknown pool {name!r}; use one of {known}") from None


class AsyncioThread:
    """An event loop on a dedicated thread for ``async def`` tasks (never the kernel's loop).

    The pool thread that runs the task waits for the coroutine in short slices, so an
    exception injected into it (a time limit, terminate) is raised within `slice`
    seconds; the coroutine is then cancelled (it sees `asyncio.CancelledError`).
    """

    #: longest uninterruptible wait of a pool thread for its coroutine
    slice = 0.05

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> Any:
        import asyncio

        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=self.name, daemon=True
                )
                self._thread.start()
            return self._loop

    def run(self, coroutine: Any) -> Any:
        """Run `coroutine` on the loop thread and wait for its result in the caller."""
        import asyncio
        import concurrent.futures

        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop())
        try:
            while True:
                try:
                    return future.result(self.slice)
                except concurrent.futures.TimeoutError:
                    continue
        except BaseException:
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
