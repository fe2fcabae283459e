"""``nbqueue status|inspect|control|events`` against a real worker process on Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import nbqueue
from tests.helpers import wait_for
from tests.integration.conftest import ROOT, run_cli

APP = ("-A", "tests.integration.cliapp")


def _online(redis_url):
    return run_cli(redis_url, "status", *APP).returncode == 0


def test_status_inspect_and_control_talk_to_the_worker(worker_process, redis_url):
    proc = worker_process("-E")
    wait_for(lambda: _online(redis_url), timeout=60, message="the worker answering a ping")

    status = run_cli(redis_url, "status", *APP)
    assert status.stdout.startswith("cli@") and "1 node online." in status.stdout

    ping = run_cli(redis_url, "inspect", "ping", *APP, "--json")
    node = next(iter(json.loads(ping.stdout)))
    assert json.loads(ping.stdout) == {node: {"ok": "pong"}}

    registered = run_cli(redis_url, "inspect", "registered", *APP)
    assert registered.returncode == 0
    assert "cli.touch" in registered.stdout and "cli.block" in registered.stdout

    limited = run_cli(redis_url, "control", "rate_limit", "cli.touch", "10/m", *APP)
    assert limited.returncode == 0, limited.stderr
    assert "new rate limit set successfully" in limited.stdout

    unknown = run_cli(redis_url, "control", "rate_limit", "cli.nope", "10/m", *APP)
    assert unknown.returncode == 1 and "ERROR" in unknown.stdout

    run_cli(redis_url, "control", "shutdown", *APP, "-d", node)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def test_no_worker_means_exit_69_like_celery(redis_url):
    result = run_cli(redis_url, "status", *APP, "-t", "0.3")
    assert result.returncode == 69
    assert "No nodes replied within time constraint" in result.stderr


def test_events_dump_shows_the_worker_and_its_tasks(worker_process, redis_url, tmp_path):
    proc = worker_process("-E")
    wait_for(lambda: _online(redis_url), timeout=60, message="the worker answering a ping")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "nbqueue", "events", *APP, "--dump", "--duration", "30"],
        cwd=ROOT,
        env={**os.environ, "NBQ_TEST_BROKER": redis_url},
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[dict] = []

    def heard(kind: str) -> bool:
        seen.append(json.loads(watcher.stdout.readline()))  # blocks until the next event
        return any(e.get("type") == kind for e in seen)

    client = nbqueue.App("cliapp", broker=redis_url, backend=None)
    try:
        wait_for(lambda: heard("worker-heartbeat"), timeout=30, message="a heartbeat")
        client.send_task("cli.touch", (str(tmp_path / "t.txt"), "x"))
        wait_for(lambda: heard("task-succeeded"), timeout=30, message="task-succeeded")
    finally:
        client.close()
        watcher.kill()
        watcher.communicate(timeout=10)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    kinds = {e.get("type") for e in seen}
    assert {"task-received", "task-started", "task-succeeded"} <= kinds
