"""The child side of the process pool: runs task functions sent by value over a pipe.

A child is a fresh interpreter (started by `nbqueue.worker.slot`, never a fork of the
kernel) that gets one end of a socket pair. Its first frame is a JSON boot record (the
signing key and the parent's ``sys.path``, so functions pickled by reference import as they
do in the parent). Then it receives
``("run", job, function, args, kwargs, request fields, bind)`` frames — signed cloudpickle,
checked before anything is unpickled — calls the function in its main thread and sends
back ``("done", job, "ok", value)`` or ``("done", job, "error", exception, traceback)``.
While a job runs, what it writes to ``sys.stdout``/``sys.stderr`` (prints, logging's last
resort) goes to the parent as ``("out", job, stream, text)`` frames, line by line, so it
lands where the task's other output goes (in a kernel: under the cell that sent it).
Everything else (storing states, callbacks, chains, chords, signals) stays in the
parent, on the one execution path. A bound task gets a `ChildTask` as ``self``: its
request, and ``update_state``/``progress``/``retry`` relayed to the parent, where the app is.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import os
import pickle
import signal
import sys
import threading
import traceback
from collections import OrderedDict
from typing import Any

import cloudpickle

from .. import states
from ..exceptions import SoftTimeLimitExceeded
from ..serialization import sign, unsign
from ..task import Context

__all__ = ["ChildTask", "child_main", "decode", "encode", "main"]

_FUNCTION_CACHE = 64


def encode(obj: Any, key: bytes) -> bytes:
    """A frame for the pipe: signed cloudpickle."""
    return sign(cloudpickle.dumps(obj), key)


def decode(blob: bytes, key: bytes) -> Any:
    """The object in a frame; `SecurityError` before unpickling anything not signed by `key`."""
    return pickle.loads(unsign(blob, key))


class ChildTask:
    """``self`` for a bound task running in a child: its request and relays to the parent."""

    def __init__(self, name: str, request: Context, channel: _Channel) -> None:
        self.name = name
        self.request = request
        self._channel = channel

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None
    ) -> None:
        """Stored by the parent, as ``Task.update_state`` would."""
        self._channel.call("update_state", task_id=task_id, state=state, meta=meta)

    def progress(self, current: float, total: float | None = None, **info: Any) -> None:
        self.update_state(state=states.PROGRESS, meta={"current": current, "total": total, **info})

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """``Task.retry`` run by the parent: it sends the retry and raises `Retry` here."""
        return self._channel.call("retry", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"{name!r} is not available to a task running in a child process "
            "(pool='processes'): a bound task there has request, name, update_state, "
            "progress and retry"
        )


class _Channel:
    """The child's end of the pipe, with the job it is running."""

    def __init__(self, conn: Any, key: bytes) -> None:
        self.conn = conn
        self.key = key
        self.job: int | None = None
        self._sending = threading.Lock()  # a task's own threads may print too

    def send(self, obj: Any) -> None:
        frame = encode(obj, self.key)
        with self._sending:
            self.conn.send_bytes(frame)

    def recv(self) -> Any:
        return decode(self.conn.recv_bytes(), self.key)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a task method in the parent and return (or raise) what it did."""
        self.send(("call", self.job, method, args, kwargs))
        _, ok, value = self.recv()
        if not ok:
            raise value
        return value


class _Relay(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a child: a running job's lines go to the parent,
    anything written between jobs to the child's own stream."""

    def __init__(self, name: str, channel: _Channel, own: Any) -> None:
        self.name = name
        self._channel = channel
        self._own = own
        self._buffer: list[str] = []
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._channel.job is None:
            return self._own.write(text)
        with self._lock:
            self._buffer.append(text)
            line_done = "\n" in text
        if line_done:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            text, self._buffer = "".join(self._buffer), []
        job = self._channel.job
        if text and job is not None:
            self._channel.send(("out", job, self.name, text))
        elif text:
            self._own.write(text)
        self._own.flush()


class _SoftLimit:
    """Turns the parent's SIGUSR1 into `SoftTimeLimitExceeded` while a task runs."""

    def __init__(self) -> None:
        self.running = False
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, self._fire)

    def _fire(self, signum: int, frame: Any) -> None:
        if self.running:
            self.running = False
            raise SoftTimeLimitExceeded("soft time limit exceeded")


def main() -> None:
    """``python -c "from nbqueue.worker.child import main; main()" <socket fd>``."""
    from multiprocessing.connection import Connection

    conn = Connection(int(sys.argv[1]))
    boot = json.loads(conn.recv_bytes())
    sys.path[:] = boot["sys_path"]
    child_main(conn, base64.b64decode(boot["key"]))


def child_main(conn: Any, key: bytes) -> None:
    """Entry point of a pool child: serve ``run`` frames until ``stop`` or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and kernel interrupts are the parent's
    channel = _Channel(conn, key)
    for name in ("stdout", "stderr"):  # a child started without a stream writes nowhere
        own = getattr(sys, f"__{name}__") or open(os.devnull, "w")  # noqa: SIM115
        setattr(sys, name, _Relay(name, channel, own))
    soft = _SoftLimit()
    functions: OrderedDict[bytes, Any] = OrderedDict()
    channel.send(("ready", os.getpid()))
    while True:
        try:
            frame = channel.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if frame[0] == "stop":
            return
        _, job, blob, args, kwargs, fields, bind = frame
        channel.job = job
        outcome = _run(_function(functions, blob), args, kwargs, fields, bind, channel, soft)
        sys.stdout.flush()  # the job's last partial lines, before its outcome
        sys.stderr.flush()
        _reply(channel, job, outcome)
        channel.job = None


def _function(cache: OrderedDict[bytes, Any], blob: bytes) -> Any:
    fn = cache.get(blob)
    if fn is None:
        fn = cache[blob] = cloudpickle.loads(blob)
        while len(cache) > _FUNCTION_CACHE:
            cache.popitem(last=False)
    return fn


def _run(
    fn: Any, args: Any, kwargs: Any, fields: dict[str, Any], bind: bool, channel: Any, soft: Any
) -> tuple[Any, ...]:
    if bind:
        request = Context(**fields, args=args, kwargs=kwargs)
        args = (ChildTask(fields.get("task") or "", request, channel), *args)
    try:
        soft.running = True
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
        soft.running = False
        return ("ok", value)
    except BaseException as exc:  # the task's business, reported to the parent
        soft.running = False
        return ("error", exc, traceback.format_exc())


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _reply(channel: _Channel, job: int, outcome: tuple[Any, ...]) -> None:
    """Send the outcome; a value or exception that cannot be pickled becomes an error."""
    try:
        channel.send(("done", job, *outcome))
    except Exception as exc:
        what = "result" if outcome[0] == "ok" else f"exception {outcome[1]!r}"
        error = TypeError(f"the task's {what} cannot be sent back from its process: {exc!r}")
        tb = outcome[2] if outcome[0] == "error" else ""
        channel.send(("done", job, "error", error, tb))
