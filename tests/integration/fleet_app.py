"""The app for worker-process tests: ``nbqueue worker -A tests.integration.fleet_app``.

Broker and results from ``$NBQ_TEST_BROKER`` (a Redis URL); acks_late, and a visibility
timeout of ``$NBQ_TEST_VISIBILITY`` seconds (default one hour, kombu's) so a killed worker's
messages come back quickly in tests. `tests.integration.fleet_celery` registers the same
tasks under the same names in a Celery app.
"""

from __future__ import annotations

import os

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


@app.task(name="fleet.square")
def square(i: int) -> int:
    return i * i


@app.task(name="fleet.add")
def add(x: int, y: int) -> int:
    return x + y
