"""Fixtures for tests that run real nbqueue worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run_cli(redis_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m nbqueue <args>`` against the test app on `redis_url`."""
    env = {**os.environ, "NBQ_TEST_BROKER": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "nbqueue", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def worker_process(redis_url, tmp_path):
    """Start ``nbqueue worker -A tests.integration.cliapp`` on Redis; kill it at the end."""
    procs = []

    def start(*extra: str) -> subprocess.Popen:
        env = {**os.environ, "NBQ_TEST_BROKER": redis_url, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nbqueue",
                "worker",
                "-A",
                "tests.integration.cliapp",
                "-c",
                "2",
                "-l",
                "info",
                "-n",
                "cli@%h",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes its pipe


#: the command line of a durability test's worker process (``-n`` and options follow)
DURABLE_WORKER = (sys.executable, "-m", "nbqueue", "worker", "-l", "info")
DURABLE_WORKER += ("-A", "tests.integration.durable_tasks")


class WorkerProcess:
    """An ``nbqueue worker`` process whose output goes to a log file (read while it runs)."""

    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the worker logs that it consumes (fail early if it exits)."""
        from tests.helpers import wait_for

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.output()}")
            return "ready, consuming" in self.output()

        wait_for(ready, timeout=timeout, message=f"worker {self.pid} to be ready")


@pytest.fixture
def durable_worker(tmp_path):
    """Start ``nbqueue worker -A tests.integration.durable_tasks`` processes; SIGKILL any
    still running at the end."""
    started: list[WorkerProcess] = []

    def start(name: str, env: dict[str, str], *extra: str) -> WorkerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*DURABLE_WORKER, "-n", f"{name}@%h", *extra],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(WorkerProcess(proc, log))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait(timeout=10)
