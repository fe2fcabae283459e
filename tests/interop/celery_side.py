"""A real Celery 5.7 app for interop tests: ``celery -A tests.interop.celery_side worker``.

The broker comes from ``NBQUEUE_INTEROP_BROKER`` (a Redis URL), the result backend from
``NBQUEUE_INTEROP_BACKEND`` (none when unset); tests start the worker as a subprocess and
talk to it with nbqueue.
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("NBQUEUE_INTEROP_BROKER", "redis://127.0.0.1:6379/15")

app = Celery("celery_side", broker=BROKER)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_send_task_events=True,
    result_backend=os.environ.get("NBQUEUE_INTEROP_BACKEND"),
)


@app.task(name="c.add")
def add(x, y):
    return x + y


@app.task(name="c.block")
def block(key):
    """Run until somebody pushes to the Redis list `key` (a gate across processes)."""
    import redis

    redis.Redis.from_url(BROKER).blpop([key], timeout=30)
    return "released"
