"""Notebook code on other processes: a task defined in a cell runs on an ``nbqueue worker``
process that never imported it (signed cloudpickle, key from ``NBQUEUE_SECRET_KEY``).

A "cell" here is source executed in a namespace whose ``__name__`` is ``__main__``, which is
what a Jupyter kernel does: its functions cannot be imported by any other process.
"""

from __future__ import annotations

import base64
import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import nbqueue
from nbqueue import serialization
from nbqueue.exceptions import SecurityError
from tests.helpers import wait_for
from tests.integration.processes import Spawner, WorkerProcess, nbqueue_worker_command

KEY = "the notebook's key"
APP = "tests.integration.fleet_app"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    with Spawner(tmp_path) as spawner:
        yield spawner


@pytest.fixture
def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The notebook's app: same Redis, the key from ``NBQUEUE_SECRET_KEY``."""
    monkeypatch.setenv("NBQUEUE_SECRET_KEY", KEY)
    app = nbqueue.App("fleet", broker=redis_url, backend=redis_url)
    try:
        yield app
    finally:
        app.close()


def run_cell(app: Any, source: str, name: str = "nb.cell") -> Any:
    """Define the task the way a notebook cell does: a function in ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return app.task(name=name)(namespace["cell"])


CELL_V1 = """
    import os

    def cell(x, marker=None):
        if marker:
            open(marker, "w").close()
        return {"version": 1, "pid": os.getpid(), "value": x * 2}
"""
CELL_V2 = CELL_V1.replace('"version": 1', '"version": 2').replace("x * 2", "x * 3")


def start_worker(spawn: Any, client: Any, name: str, key: str, queue: str) -> WorkerProcess:
    """An ``nbqueue worker`` process on `queue` with `key`, answering pings."""
    options = ("-n", f"{name}@fleet", "-Q", queue, "-c", "2", "-l", "info")
    command = nbqueue_worker_command(APP, *options)
    env = {"NBQ_TEST_BROKER": client.conf.broker_url, "NBQUEUE_SECRET_KEY": key}
    proc = spawn(name, command, env)

    def answers() -> Any:
        assert proc.alive(), f"worker {name} exited:\n{proc.log()}"
        return client.control.inspect(destination=[f"{name}@fleet"], timeout=0.5).ping()

    wait_for(answers, timeout=90, message=f"{name}@fleet answering pings")
    return proc


def test_a_cell_task_runs_on_a_worker_process_that_never_imported_it(spawn, client):
    proc = start_worker(spawn, client, "cells", KEY, "cells")
    registered = client.control.inspect(destination=["cells@fleet"], timeout=5).registered()
    assert "nb.cell" not in registered["cells@fleet"]  # it only knows fleet_app's tasks

    cell = run_cell(client, CELL_V1)
    assert not cell.importable
    first = cell.apply_async((21,), queue="cells").get(timeout=60)
    assert first == {"version": 1, "pid": proc.pid, "value": 42}
    assert proc.pid != os.getpid()

    cell = run_cell(client, CELL_V2)  # re-running the cell: new messages run the new code
    assert cell.apply_async((21,), queue="cells").get(timeout=60)["version"] == 2
    assert cell.apply_async((7,), queue="cells").get(timeout=60)["value"] == 21


def test_a_worker_with_another_key_refuses_the_payload_and_keeps_running(
    spawn, client, tmp_path: Path
):
    proc = start_worker(spawn, client, "otherkey", "not the notebook's key", "otherkey")
    cell = run_cell(client, CELL_V1)
    marker = tmp_path / "the cell ran"
    refused = cell.apply_async((1,), {"marker": str(marker)}, queue="otherkey")
    # the refusal is stored as the task's failure: the client is told, not left waiting
    with pytest.raises(SecurityError, match="signed with another key"):
        refused.get(timeout=60)
    assert not marker.exists()
    log = proc.log()
    assert f"received invalid task message nb.cell[{refused.id}]" in log
    assert "refusing a pickle signed with another key" in log
    # still alive and consuming: importable code (JSON) runs there
    assert client.send_task("fleet.add", (2, 3), queue="otherkey").get(timeout=60) == 5
    assert proc.alive()


def _waiting_envelopes(redis_url: str, queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def test_importable_tasks_stay_pure_json_on_the_wire(client, redis_url):
    from tests.integration import fleet_app

    queue = f"peek-{uuid.uuid4().hex[:6]}"  # nobody consumes it: the messages wait there
    client.task(name="fleet.square")(fleet_app.square.run)
    client.tasks["fleet.square"].apply_async((3,), queue=queue)
    run_cell(client, CELL_V1).apply_async((3,), queue=queue)
    cell, importable = _waiting_envelopes(redis_url, queue)  # kombu LPUSHes: newest first
    assert importable["headers"]["task"] == "fleet.square"
    assert importable["content-type"] == serialization.JSON == "application/json"
    assert importable["properties"]["body_encoding"] == "base64"  # kombu's Redis envelope
    body = json.loads(base64.b64decode(importable["body"]))
    assert body == [[3], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert cell["headers"]["task"] == "nb.cell"
    assert cell["content-type"] == serialization.CLOUDPICKLE
