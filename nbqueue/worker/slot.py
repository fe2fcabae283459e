"""One child process of the process pool, and the socket to it (the parent's side).

The child is a fresh interpreter started with `subprocess` — ``python -c "...child.main()"``
with one end of a socket pair — rather than `multiprocessing`'s ``spawn``: spawn re-runs
the parent's ``__main__`` in every child, which starts workers again from a script
without an ``if __name__ == "__main__"`` guard and fails outright for code read from
stdin. Our child needs nothing from ``__main__``: task functions travel by value.
"""

from __future__ import annotations

import base64
import json
import os
import signal as signals
import socket
import subprocess
import sys
from multiprocessing.connection import Connection, wait
from typing import Any

from ..exceptions import NbqueueError, WorkerLostError
from ..execution import Terminate
from .child import decode, encode

__all__ = ["ChildGone", "Slot"]

_BOOT = "from nbqueue.worker.child import main; main()"


class ChildGone(NbqueueError):
    """The slot's child exited (or was killed) while the slot waited on it (internal:
    the pool turns it into `WorkerLostError` or a terminated task's error)."""


def _pythonpath() -> str:
    """``PYTHONPATH`` for a child: where this nbqueue lives first, then the caller's own."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rest = os.environ.get("PYTHONPATH")
    return here + (os.pathsep + rest if rest else "")


class Slot:
    """One child process; driven by one slot thread at a time.

    ``pending`` is the job the child is running (None when idle); ``request`` the worker
    request being executed; ``terminated`` the signal `terminate_job` sent, if any.
    """

    def __init__(self, label: str, key: bytes) -> None:
        self.label = label
        self.key = key
        self.request: Any = None
        self.terminated: int | None = None
        self.jobs = 0
        self.pending: int | None = None
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
        self.conn = Connection(ours.detach())
        boot = {"key": base64.b64encode(key).decode(), "sys_path": sys.path, "label": label}
        self.conn.send_bytes(json.dumps(boot).encode())

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Wait for the child's ``ready``; RuntimeError (naming the child) if it never comes."""
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"{self.label} did not start within {timeout:.0f} s")
        try:
            kind, _ = self.recv()
        except (EOFError, OSError):
            code = self.process.wait(5.0)
            raise RuntimeError(f"{self.label} exited at start-up (exit code {code})") from None
        if kind != "ready":
            self.kill()
            raise RuntimeError(f"{self.label} sent {kind!r} instead of 'ready'")

    def encode(self, obj: Any) -> bytes:
        return encode(obj, self.key)

    def post(self, frame: bytes) -> None:
        """Send an encoded frame; `ChildGone` if the child is not there to read it."""
        try:
            self.conn.send_bytes(frame)
        except (OSError, ValueError):
            raise ChildGone() from None

    def send(self, obj: Any) -> None:
        self.post(self.encode(obj))

    def recv(self) -> Any:
        return decode(self.conn.recv_bytes(), self.key)

    def wait(self, timeout: float | None) -> bool:
        """Whether a frame (or the child's exit, read as end of file) arrived in `timeout`."""
        return bool(wait([self.conn], timeout))

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def signal_soft_limit(self) -> None:
        """Raise `SoftTimeLimitExceeded` in the child's task (where SIGUSR1 exists)."""
        if hasattr(signals, "SIGUSR1"):
            self.signal(signals.SIGUSR1)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(5.0)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to exit, then make sure it has."""
        try:
            self.send(("stop",))
            self.process.wait(timeout)
        except (ChildGone, subprocess.TimeoutExpired):
            pass
        self.kill()
        self.conn.close()

    def lost(self) -> BaseException:
        """The error for the request whose child died under it."""
        code = self.process.wait(5.0)
        if self.terminated is not None:  # terminate_job: the run ends REVOKED
            return Terminate(f"terminated by {signals.Signals(self.terminated).name}")
        how = f"signal {-code} ({signals.Signals(-code).name})" if code < 0 else str(code)
        return WorkerLostError(f"Worker exited prematurely: {how} Job: {self.jobs}.")
