"""Notebook 9's app and tasks: importable, so they travel as plain JSON any worker can run.

Broker and results: the Redis server named by ``NBQUEUE_REDIS_URL`` (default: the local
server's database 0), shared by the notebook, ``nbqueue worker`` processes and Celery.
"""

from __future__ import annotations

import os

import nbqueue

REDIS_URL = os.environ.get("NBQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")

app = nbqueue.App("nb09", broker=REDIS_URL, backend=REDIS_URL)


@app.task(name="nb09.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="nb09.whoami", bind=True)
def whoami(self: nbqueue.Task) -> dict[str, object]:
    """Who ran this: the worker's node name and its process id."""
    return {"node": self.request.hostname, "pid": os.getpid()}
