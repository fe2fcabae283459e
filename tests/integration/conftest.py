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
