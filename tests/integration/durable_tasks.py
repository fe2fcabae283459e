"""The app that durability tests run in ``nbqueue worker`` processes (importable tasks, JSON).

Configured from the environment so that the test decides broker, backend and timeouts:
``NBQ_TEST_BROKER``, ``NBQ_TEST_BACKEND``, ``NBQ_TEST_VISIBILITY`` (seconds) and
``NBQ_TEST_MAX_RETRIES`` (``broker_connection_max_retries``) and ``NBQ_TEST_RETRY_ON_STARTUP``
(``broker_connection_retry_on_startup``, 0 or 1). Every run of a task appends
one JSON line to ``<log_dir>/runs.jsonl`` (pid, redelivered flag), so a test can tell which
process ran what, and how often.
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

import nbqueue

#: seconds a held task waits for its release file before giving up
HOLD_LIMIT = 120.0


def make_app(broker: str, backend: str | None, *, visibility: float = 3600.0, **conf: Any):
    """The durability app: acks late, a visibility timeout swept at once when idle."""
    return nbqueue.App(
        "durable",
        broker=broker,
        backend=backend,
        task_acks_late=True,
        broker_transport_options={
            "visibility_timeout": visibility,
            # kombu sweeps for expired unacked messages on idle polls; every poll here
            "unacked_restore_throttle": 1,
            # a sweep holds a lock key for milliseconds; when Redis restarts in the middle
            # of one, the key (persisted) blocks every sweep until it expires (kombu: 300 s)
            "unacked_mutex_expire": 5,
        },
        **conf,
    )


def _conf_from_env() -> dict[str, Any]:
    conf: dict[str, Any] = {"visibility": float(os.environ.get("NBQ_TEST_VISIBILITY", "3600"))}
    if "NBQ_TEST_MAX_RETRIES" in os.environ:
        conf["broker_connection_max_retries"] = int(os.environ["NBQ_TEST_MAX_RETRIES"])
    if "NBQ_TEST_RETRY_ON_STARTUP" in os.environ:
        conf["broker_connection_retry_on_startup"] = os.environ["NBQ_TEST_RETRY_ON_STARTUP"] == "1"
    return conf


app = make_app(
    os.environ.get("NBQ_TEST_BROKER", "memory://"),
    os.environ.get("NBQ_TEST_BACKEND") or None,
    **_conf_from_env(),
)


def _redelivered(request: Any) -> bool:
    return bool((request.delivery_info or {}).get("redelivered"))


def _log_run(log_dir: str, tag: str, request: Any) -> dict[str, Any]:
    run = {
        "tag": tag,
        "id": request.id,
        "pid": os.getpid(),
        "redelivered": _redelivered(request),
        "time": time.time(),
    }
    with open(Path(log_dir) / "runs.jsonl", "a") as f:  # one short append: atomic on Linux
        f.write(json.dumps(run) + "\n")
    return run


@app.task(name="durable.hold", bind=True)
def hold(self: Any, log_dir: str, tag: str) -> dict[str, Any]:
    """Log the run, then wait for ``<log_dir>/release`` to exist (a test opens the gate)."""
    run = _log_run(log_dir, tag, self.request)
    release = Path(log_dir) / "release"
    deadline = time.monotonic() + HOLD_LIMIT
    pause = threading.Event()
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{release} never appeared")
        pause.wait(0.05)
    return {"pid": run["pid"], "redelivered": run["redelivered"]}


@app.task(name="durable.note", bind=True)
def note(self: Any, log_dir: str, tag: str) -> dict[str, Any]:
    """Log the run and return who ran it."""
    run = _log_run(log_dir, tag, self.request)
    return {"pid": run["pid"], "redelivered": run["redelivered"]}


@cache
def _backend_client() -> Any:
    import redis

    return redis.Redis.from_url(os.environ["NBQ_TEST_BACKEND"])


#: hash (in the result backend's Redis) counting the runs of each `double` task id
RUNS_KEY = "durable:runs"


@app.task(name="durable.double", bind=True)
def double(self: Any, i: int) -> int:
    """Count this run in the backend's Redis (``HINCRBY durable:runs <id>``), return 2i."""
    _backend_client().hincrby(RUNS_KEY, self.request.id, 1)
    return 2 * i
