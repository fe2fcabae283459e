"""The app for worker-process tests: ``nbqueue worker -A tests.integration.fleet_app``.

Broker and results from ``$NBQ_TEST_BROKER`` (a Redis URL); acks_late, and a visibility
timeout of ``$NBQ_TEST_VISIBILITY`` seconds (default one hour, kombu's) so a killed worker's
messages come back quickly in tests. With ``$NBQ_TEST_TICKS`` (a file path) a beat
schedule appends a line to that file every half second (for ``-B``).
`tests.integration.fleet_celery` registers the same tasks under the same names in Celery.
"""

from __future__ import annotations

import os
import time

import nbqueue

BROKER = os.environ.get("NBQ_TEST_BROKER", "memory://")
VISIBILITY = float(os.environ.get("NBQ_TEST_VISIBILITY", "3600"))

app = nbqueue.App(
    "fleet",
    broker=BROKER,
    backend=None if BROKER.startswith("memory") else BROKER,
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("NBQ_TEST_PREFETCH", "4")),
    broker_transport_options={"visibility_timeout": VISIBILITY},
)
if os.environ.get("NBQ_TEST_TICKS"):
    app.conf.beat_schedule = {
        "tick": {"task": "fleet.tick", "schedule": 0.5, "args": (os.environ["NBQ_TEST_TICKS"],)}
    }


@app.task(name="fleet.square")
def square(i: int) -> int:
    return i * i


@app.task(name="fleet.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="fleet.tick")
def tick(path: str) -> None:
    with open(path, "a") as file:
        file.write(f"{time.time()}\n")


@app.task(name="fleet.hold", bind=True)
def hold(self, seconds: float) -> str:
    """Run for `seconds`, reporting progress every tenth (for ``call --wait``)."""
    for step in range(10):
        self.update_state(state="PROGRESS", meta={"current": step, "total": 10})
        time.sleep(seconds / 10)  # stands in for work
    return "held"
