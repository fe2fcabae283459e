"""Priorities on Redis: kombu's steps 0/3/6/9, and Redis serves the *lowest* number first."""

from __future__ import annotations

import nbqueue
from nbqueue.protocol import new_id
from tests.helpers import wait_for


def test_redis_serves_lower_priorities_first_in_kombus_steps(redis_url):
    app = nbqueue.App("prio", broker=redis_url, backend="memory://")
    queue = f"prio-{new_id()}"  # a queue of our own: other test runs may share the server
    order = []

    @app.task(name="t.prio", ignore_result=True, queue=queue, serializer="json")
    def prio(p):
        order.append(p)

    try:
        # sent before the worker starts, so the consumer sees all of them at once
        for p in (9, 5, 0, 2, 7, 4, 8):
            prio.apply_async((p,), priority=p)
        with app.worker(concurrency=1, prefetch_multiplier=1, queues=[queue]):
            # not worker.drain(): on Redis it can return while a BRPOP reply is in flight
            wait_for(lambda: len(order) == 7, timeout=20, message="all seven run")
    finally:
        app.close()
    # buckets: 0-2 -> 0, 3-5 -> 3, 6-8 -> 6, 9 -> 9; first in, first out within a bucket
    assert order == [0, 2, 5, 4, 7, 8, 9]
