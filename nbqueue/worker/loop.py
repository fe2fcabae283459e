"""The loop thread that drives a worker's broker connection (the Hub step's engine)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["Loop"]

logger = logging.getLogger(__name__)


class Loop:
    """Drains deliveries from one kombu connection and runs calls scheduled onto it.

    kombu channels are not thread-safe, so everything that touches the consumer's channel
    (consume, cancel, close) is run *in* this thread through `call_soon`/`run_sync`.
    """

    #: how long one drain waits before looking at scheduled calls again (transports that
    #: can be woken, like the in-process one, return at once when woken)
    poll_timeout = 0.25

    def __init__(self, name: str) -> None:
        self.name = name
        self.connection: Any = None
        self.on_connection_error: Callable[[BaseException], None] | None = None
        self._calls: deque[Callable[[], Any]] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._idle = threading.Event()

    # scheduling -------------------------------------------------------------------------
    def call_soon(self, fun: Callable[..., Any], *args: Any) -> None:
        self._calls.append(lambda: fun(*args))
        self.wakeup()

    def run_sync(self, fun: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fun(*args)`` in the loop thread and wait for its result."""
        if self.in_loop_thread() or not self.is_running():
            return fun(*args)
        future: Future[Any] = Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fun(*args))
                except BaseException as exc:
                    future.set_exception(exc)

        self._calls.append(call)
        self.wakeup()
        return future.result(timeout)

    def wakeup(self) -> None:
        """Make a waiting drain return now (when the transport allows it)."""
        self._idle.set()
        transport = getattr(self.connection, "transport", None)
        wake = getattr(transport, "wakeup", None)
        if wake is not None:
            wake()

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run_calls(self) -> None:
        calls = self._calls
        while calls:
            call = calls.popleft()
            try:
                call()
            except Exception:
                logger.exception("%s: scheduled call failed", self.name)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._run_calls()
            connection = self.connection
            if connection is None:
                self._idle.wait(self.poll_timeout)
                self._idle.clear()
                continue
            try:
                connection.drain_events(timeout=self.poll_timeout)
            except TimeoutError:
                continue
            except Exception as exc:
                self._on_error(connection, exc)
        self._run_calls()

    def _on_error(self, connection: Any, exc: BaseException) -> None:
        recoverable = connection.connection_errors + connection.channel_errors
        if isinstance(exc, recoverable) and self.on_connection_error is not None:
            self.connection = None
            self.on_connection_error(exc)
        else:
            logger.exception("%s: error while draining the broker connection", self.name)
            self._stopping.wait(self.poll_timeout)  # never spin on a persistent fault

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; returns False if it did not exit within `timeout`."""
        self._stopping.set()
        self.wakeup()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True
