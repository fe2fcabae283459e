"""Every option of ``nbqueue worker`` that issue 5 names, and ``purge``, ``call``, ``demo``,
``events``, ``inspect``/``control`` errors, as real processes (``python -m nbqueue`` and
the ``nbqueue`` script). Shutdown by SIGTERM is in test_cli_worker.py; SIGINT is here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import nbqueue
from tests.helpers import wait_for
from tests.integration.processes import ROOT, Spawner, WorkerProcess, nbqueue_worker_command

APP = ("-A", "tests.integration.fleet_app")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    with Spawner(tmp_path) as spawner:
        yield spawner


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    app = nbqueue.App("fleet", broker=redis_url, backend=redis_url)
    try:
        yield app
    finally:
        app.close()


def cli(redis_url: str, *args: str, stdin: str = "", timeout: float = 90) -> Any:
    """``python -m nbqueue <args>`` against `tests.integration.fleet_app` on `redis_url`."""
    return subprocess.run(
        [sys.executable, "-m", "nbqueue", *args],
        cwd=ROOT,
        env={**os.environ, "NBQ_TEST_BROKER": redis_url},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(spawn: Spawner, client: Any, node: str, *options: str, **env: str) -> WorkerProcess:
    """``nbqueue worker -A tests.integration.fleet_app -n <node> <options>``, answering."""
    command = nbqueue_worker_command(APP[1], "-n", node, *options)
    proc = spawn(node.split("@")[0], command, {"NBQ_TEST_BROKER": client.conf.broker_url, **env})

    def answers() -> Any:
        assert proc.alive(), f"{node} exited:\n{proc.log()}"
        return client.control.inspect(destination=[node], timeout=0.5).ping()

    wait_for(answers, timeout=90, message=f"{node} answering pings")
    return proc


def stats(client: Any, node: str) -> dict[str, Any]:
    return client.control.inspect(destination=[node], timeout=5).stats()[node]


# worker options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "implementation"),
    [
        ("threads", "pools:ThreadPool"),
        ("processes", "processes:ProcessPool"),
        ("solo", "pools:SoloPool"),
    ],
)
def test_pool_concurrency_and_queues(spawn, client, pool, implementation):
    node = f"{pool}@opts"
    start(spawn, client, node, "-P", pool, "-c", "2", "-Q", "alpha,beta")
    info = stats(client, node)["pool"]
    assert implementation in info["implementation"]
    assert info["max-concurrency"] == (1 if pool == "solo" else 2)
    queues = client.control.inspect(destination=[node], timeout=5).active_queues()[node]
    assert sorted(q["name"] for q in queues) == ["alpha", "beta"]
    for queue in ("alpha", "beta"):
        assert client.send_task("fleet.add", (2, 3), queue=queue).get(timeout=60) == 5
    # not consuming the default queue: a message there waits
    waiting = client.send_task("fleet.add", (1, 1))
    assert client.send_task("fleet.add", (4, 4), queue="beta").get(timeout=60) == 8
    assert waiting.state == "PENDING"


def test_hostname_placeholders_and_loglevel(spawn, client):
    host = socket.gethostname()
    proc = start(spawn, client, f"w@{host}", "-l", "debug")  # first, the plain name answers
    assert proc.stop() == 0
    assert "DEBUG/" in proc.log()
    proc = spawn(
        "placeholders",
        nbqueue_worker_command(APP[1], "-n", "w-%i@%h", "-l", "error"),
        {"NBQ_TEST_BROKER": client.conf.broker_url},
    )
    node = f"w-{proc.pid}@{host}"  # %h: this host; %i: the worker's pid (nbqueue's own)
    wait_for(lambda: client.control.inspect(destination=[node], timeout=0.5).ping(), timeout=90)
    assert "DEBUG/" not in proc.log() and "INFO/" not in proc.log()


def test_events_flag_turns_task_events_on(spawn, client):
    start(spawn, client, "quiet@opts")
    start(spawn, client, "loud@opts", "-E", "-Q", "loud")
    seen: list[dict[str, Any]] = []

    def heard(kind: str, hostname: str, after: int = 0) -> bool:
        return any(e["type"] == kind and e["hostname"] == hostname for e in seen[after:])

    with client.events.Receiver(handlers={"*": seen.append}).start():
        assert client.send_task("fleet.add", (1, 1)).get(timeout=60) == 2
        assert client.send_task("fleet.add", (2, 2), queue="loud").get(timeout=60) == 4
        wait_for(lambda: heard("task-succeeded", "loud@opts"), timeout=30)
        mark = len(seen)  # a later heartbeat from the quiet one: its events would be in
        wait_for(lambda: heard("worker-heartbeat", "quiet@opts", mark), timeout=30)
    senders = {e["hostname"] for e in seen if e["type"].startswith("task-")}
    assert senders == {"loud@opts"}


def test_autoscale_sets_the_pool_range(spawn, client):
    node = "auto@opts"
    start(spawn, client, node, "--autoscale", "4,1")
    info = stats(client, node)
    assert info["autoscaler"]["max"] == 4 and info["autoscaler"]["min"] == 1
    assert client.send_task("fleet.add", (1, 2)).get(timeout=60) == 3


def test_statedb_keeps_revoked_ids_across_restarts(spawn, client, tmp_path):
    statedb = str(tmp_path / "worker.state")
    node = "state@opts"
    first = start(spawn, client, node, "--statedb", statedb)
    client.control.revoke("revoked-before-restart", destination=[node], reply=True)
    assert first.stop() == 0
    start(spawn, client, node, "--statedb", statedb, "--without-mingle")
    revoked = client.control.inspect(destination=[node], timeout=5).revoked()[node]
    assert "revoked-before-restart" in revoked


def test_beat_flag_runs_the_schedule_in_the_worker(spawn, client, tmp_path):
    ticks = tmp_path / "ticks"
    start(spawn, client, "beat@opts", "-B", NBQ_TEST_TICKS=str(ticks))
    wait_for(
        lambda: ticks.exists() and len(ticks.read_text().splitlines()) >= 3,
        timeout=60,
        message="three ticks from the embedded beat",
    )


def test_sigint_is_a_warm_shutdown_like_sigterm(spawn, client):
    proc = start(spawn, client, "sigint@opts")
    proc.signal(signal.SIGINT)
    assert proc.wait(60) == 0
    assert "worker: Warm shutdown (MainProcess)" in proc.log()


def test_bad_options_are_usage_errors(redis_url):
    for args in (("-P", "gevent"), ("-l", "chatty"), ("-c", "many")):
        result = cli(redis_url, "worker", *APP, *args)
        assert result.returncode == 2, result
        assert "invalid" in result.stderr


# one-shot commands ------------------------------------------------------------------------


def test_purge_asks_then_empties_the_queues(redis_url, client):
    with client.broker.batch():
        for i in range(5000):
            client.send_task("fleet.add", (i, i))
    aborted = cli(redis_url, "purge", *APP, stdin="n\n")
    assert aborted.returncode == 1 and "Aborted!" in aborted.stdout
    assert "1 queue: celery" in aborted.stdout
    store = redis.Redis.from_url(redis_url)
    try:
        assert store.llen("celery") == 5000
        excluded = cli(redis_url, "purge", *APP, "-f", "-X", "celery")
        assert excluded.stdout.strip() == "No queues to purge."
        purged = cli(redis_url, "purge", *APP, "-f")
        assert purged.returncode == 0
        assert purged.stdout.strip() == "Purged 5000 messages from 1 known task queue."
        assert store.llen("celery") == 0
        again = cli(redis_url, "purge", *APP, "-f", "-Q", "celery,other")
        assert again.stdout.strip() == "No messages purged from 2 queues."
    finally:
        store.close()


def test_call_sends_prints_the_id_and_waits_with_progress(spawn, client, redis_url):
    start(spawn, client, "call@opts")
    sent = cli(redis_url, "call", "fleet.add", *APP, "--args", "[2, 3]")
    assert sent.returncode == 0
    task_id = sent.stdout.strip()
    assert client.AsyncResult(task_id).get(timeout=60) == 5

    waited = cli(redis_url, "call", "fleet.hold", *APP, "--args", "[1.0]", "--wait")
    assert waited.returncode == 0, waited.stderr
    task_id, value = waited.stdout.split()
    assert json.loads(value) == "held"
    assert "fleet.hold" in waited.stderr and "task" in waited.stderr  # the tqdm bar

    failed = cli(redis_url, "call", "fleet.add", *APP, "--args", '["x", 1]', "--wait")
    assert failed.returncode == 1
    assert "TypeError" in failed.stderr

    bad = cli(redis_url, "call", "fleet.add", *APP, "--args", "{not json")
    assert bad.returncode == 2 and "--args is not JSON" in bad.stderr


def test_inspect_and_control_reject_unknown_commands(redis_url):
    inspect = cli(redis_url, "inspect", "nonsense", *APP)
    assert inspect.returncode == 2 and "unknown inspect command 'nonsense'" in inspect.stderr
    control = cli(redis_url, "control", "nonsense", *APP)
    assert control.returncode == 2 and "unknown control command 'nonsense'" in control.stderr
    too_many = cli(redis_url, "control", "rate_limit", "a", "b", "c", *APP)
    assert too_many.returncode == 2 and "takes at most 2 arguments" in too_many.stderr


def test_events_live_view_lists_the_worker(spawn, client, redis_url):
    start(spawn, client, "watched@opts", "-E")
    view = cli(redis_url, "events", *APP, "--duration", "6", "--interval", "1")
    assert view.returncode == 0
    assert "workers:" in view.stdout and "watched@opts" in view.stdout


def test_demo_runs_a_batch_in_process(redis_url):
    demo = cli(redis_url, "demo", "-n", "50", "-c", "2")
    assert demo.returncode == 0, demo.stderr
    assert "sum of squares: 40425 (expected 40425)" in demo.stdout
    assert "50 tasks in" in demo.stdout


def test_the_nbqueue_script_is_the_same_command():
    script = shutil.which("nbqueue", path=str(Path(sys.executable).parent))
    assert script is not None, "the nbqueue console script is not installed"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("demo", "worker", "purge", "call", "inspect", "control", "status", "events"):
        assert command in result.stdout
