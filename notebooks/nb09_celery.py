"""A real Celery app on notebook 9's Redis: ``python -m celery -A nb09_celery worker``.

It registers the same task names as `nb09_tasks`, so a Celery worker runs the JSON
messages that nbqueue sends, and stores results where nbqueue reads them.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("NBQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("nb09_celery", broker=REDIS_URL, backend=REDIS_URL)
app.conf.broker_connection_retry_on_startup = True


@app.task(name="nb09.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="nb09.whoami", bind=True)
def whoami(self) -> dict[str, object]:
    """Who ran this: the worker's node name and its process id."""
    return {"node": self.request.hostname, "pid": os.getpid()}
