"""Worker processes for tests: ``nbqueue worker`` and ``celery worker`` on a Redis URL,
their output in a log file, stopped by their own pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


class WorkerProcess:
    """One worker process started by a test; `stop` sends SIGTERM and waits, then kills."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 60) -> int:
        """Warm shutdown (SIGTERM); SIGKILL if it has not exited within `timeout` seconds."""
        self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._log.close()
        return code


def nbqueue_worker_command(app: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "nbqueue", "worker", "-A", app, *options]


def celery_worker_command(app: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app, "worker", *options]


class Spawner:
    """``spawn(name, command, env)`` starts a `WorkerProcess`; leaving the block stops them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def __call__(self, name: str, command: list[str], env: dict[str, str]) -> WorkerProcess:
        proc = WorkerProcess(command, env, self.log_dir / f"{name}.log")
        self.started.append(proc)
        return proc

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for proc in self.started:
            proc.stop()
