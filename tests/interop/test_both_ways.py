"""Celery interop, both ways, on Redis: a real Celery worker (in a thread, and as a
``celery worker`` process) runs JSON tasks sent by nbqueue and nbqueue reads the results;
an nbqueue worker runs tasks sent with Celery's ``send_task``/``delay`` and Celery's client
reads the results."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import nbqueue
from tests.interop.conftest import wait_until_answering

# Celery 5.7's Redis backend calls redis-py 8's deprecated setex(): theirs, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


@pytest.fixture
def nb_app(redis_url: str) -> Iterator[Any]:
    """An nbqueue app on the same Redis database as the Celery side (broker and backend)."""
    app = nbqueue.App("both-ways", broker=redis_url, backend=redis_url)
    try:
        yield app
    finally:
        app.close()


def _wire_content_type(app: Any, task_id: str) -> str:
    """The content type of the message for `task_id` still waiting in the default queue."""
    with app.broker.connection() as conn:
        queue = conn.SimpleQueue("celery", no_ack=False)
        try:
            message = queue.get(timeout=5)
            message.requeue()
        finally:
            queue.close()
    assert message.headers["id"] == task_id
    return message.content_type


def test_a_celery_worker_in_a_thread_runs_our_tasks_and_we_read_the_results(
    nb_app: Any, celery_worker: Any
) -> None:
    @nb_app.task(name="interop.add", serializer="json")  # a cell-made task, sent as JSON
    def add(x: int, y: int) -> int:
        return x + y

    by_delay = add.delay(2, 3)
    assert _wire_content_type(nb_app, by_delay.id) == "application/json"
    by_name = nb_app.send_task("interop.add", (10, 20))
    summed = nbqueue.chord([add.s(1, 1), add.s(2, 2)], nb_app.signature("interop.tsum"))()
    with celery_worker(queues=["celery"]):
        assert by_delay.get(timeout=30) == 5
        assert by_name.get(timeout=30) == 30
        assert summed.get(timeout=30) == 6
    assert by_delay.successful() and by_name.state == "SUCCESS"


def test_a_celery_worker_process_runs_our_tasks_and_we_read_the_results(
    nb_app: Any, redis_url: str, celery_process: Any
) -> None:
    proc = celery_process("cel@both", backend=redis_url)
    wait_until_answering(nb_app, "cel@both", proc)
    results = [nb_app.send_task("c.add", (i, i)) for i in range(50)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(50)]
    assert all(r.successful() for r in results)


def test_our_worker_runs_celery_sent_tasks_and_celery_reads_the_results(
    nb_app: Any, celery_app: Any
) -> None:
    @nb_app.task(name="interop.add")
    def add(x: int, y: int) -> int:
        return x + y

    @nb_app.task(name="interop.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    with nb_app.worker(concurrency=2):
        assert celery_app.send_task("interop.add", (2, 3)).get(timeout=30) == 5
        assert celery_app.tasks["interop.add"].delay(4, 5).get(timeout=30) == 9
        from celery import chord

        header = [celery_app.tasks["interop.add"].s(i, i) for i in range(5)]
        joined = chord(header)(celery_app.tasks["interop.tsum"].s())
        assert joined.get(timeout=30) == 20
