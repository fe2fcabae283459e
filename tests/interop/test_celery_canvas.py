"""Canvases across systems, in one process over nbqueue's in-process broker: a Celery 5.7
client's workflows run on an nbqueue worker, and nbqueue's run on a Celery worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nbqueue

celery = pytest.importorskip("celery")


@pytest.fixture
def apps() -> Iterator[tuple]:
    """An nbqueue app and a Celery app with the same tasks, sharing one broker namespace."""
    from celery import Celery

    nb = nbqueue.App("wiretasks")

    # defined in a function, these would travel by value (cloudpickle) unless told: JSON
    @nb.task(name="wiretasks.add", serializer="json")
    def add(x, y):
        return x + y

    @nb.task(name="wiretasks.tsum", serializer="json")
    def tsum(values):
        return sum(values)

    namespace = nb._namespace()  # one Celery app per test: its own task registry
    cel = Celery(f"wt-{nb.id}", broker=f"nbmemory://{namespace}", backend="cache+memory://")
    cel.conf.worker_hijack_root_logger = False

    @cel.task(name="wiretasks.add", shared=False)
    def cadd(x, y):
        return x + y

    @cel.task(name="wiretasks.tsum", shared=False)
    def ctsum(values):
        return sum(values)

    try:
        yield nb, (add, tsum), cel, (cadd, ctsum)
    finally:
        nb.close()


def test_celery_built_workflows_run_on_an_nbqueue_worker(apps):
    from celery import chain, chord, group

    nb, _, _, (add, tsum) = apps
    with nb.worker(concurrency=2) as worker:
        # the chord in the middle is applied by our worker, from embed.chain
        result = chain(add.s(1, 1), chord([add.s(10), add.s(20)], tsum.s()), add.s(100))()
        assert nb.AsyncResult(result.id).get(timeout=10) == 134
        grouped = group(chain(add.s(1, 1), add.s(2)), add.s(5, 5))()
        assert [nb.AsyncResult(r.id).get(timeout=10) for r in grouped.results] == [4, 10]
        assert worker.drain(10)


def test_nbqueue_built_workflows_run_on_a_celery_worker(apps):
    from celery.contrib.testing.worker import start_worker

    _, (add, tsum), cel, _ = apps
    with start_worker(cel, pool="threads", concurrency=2, perform_ping_check=False):
        result = nbqueue.chain(
            add.s(1, 1), nbqueue.chord([add.s(10), add.s(20)], tsum.s()), add.s(100)
        ).apply_async()
        assert cel.AsyncResult(result.id).get(timeout=10, interval=0.01) == 134
        grouped = nbqueue.group(nbqueue.chain(add.s(1, 1), add.s(2)), add.s(5, 5)).apply_async()
        values = [cel.AsyncResult(r.id).get(timeout=10, interval=0.01) for r in grouped]
        assert values == [4, 10]
        limited = add.apply_async((2, 3), time_limit=30, soft_time_limit=20, countdown=0.01)
        assert cel.AsyncResult(limited.id).get(timeout=10, interval=0.01) == 5
