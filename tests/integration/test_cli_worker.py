"""``nbqueue worker`` as a real process: it runs tasks and shuts down the way Celery's does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_for

HERE = Path(__file__).parent


def _client(redis_url):
    import nbqueue

    client = nbqueue.App("cliapp", broker=redis_url, backend=None)
    return client


def test_worker_process_runs_tasks_and_warm_shutdown_exits_zero(
    worker_process, redis_url, tmp_path
):
    proc = worker_process()
    client = _client(redis_url)
    try:
        target = tmp_path / "out.txt"
        client.send_task("cli.touch", (str(target), "hello"))
        wait_for(target.exists, timeout=30, message="the worker process to run cli.touch")
        assert target.read_text() == "hello"
    finally:
        client.close()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "worker: Warm shutdown (MainProcess)" in out
    assert "cli@" in out and "cli.touch" in out  # the banner


def test_second_signal_makes_the_shutdown_cold_and_exits_one(worker_process, redis_url, tmp_path):
    proc = worker_process("--shutdown-timeout", "60")
    client = _client(redis_url)
    try:
        started = tmp_path / "started"
        client.send_task("cli.block", (str(started),))
        wait_for(started.exists, timeout=30, message="the blocking task to start")
    finally:
        client.close()
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert "Warm shutdown" in out and "Cold shutdown" in out
    import redis

    # the abandoned acks_late message went back to the queue
    db = int(redis_url.rsplit("/", 1)[1])
    assert redis.Redis(host="127.0.0.1", port=6379, db=db).llen("celery") == 1


def test_unknown_app_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "nbqueue", "worker", "-A", "no_such_module"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE.parents[1],
    )
    assert proc.returncode == 2
    assert "unable to load the app 'no_such_module'" in proc.stderr
