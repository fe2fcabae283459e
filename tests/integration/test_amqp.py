"""An in-process worker on RabbitMQ (kombu's py-amqp transport) with its results in Redis.

Tasks, a group, a chord, retries, priorities (queues declared with ``x-max-priority`` from
``task_queue_max_priority``) and acks_late redelivery when a worker's channel closes.
Queues are named per test and deleted afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import nbqueue
from tests.contract.conftest import delete_names
from tests.helpers import wait_for

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def amqp_app(rabbitmq_url: str, redis_url: str) -> Iterator[Any]:
    """An app on RabbitMQ with Redis results; its default queue is the test's own."""
    queue = f"amqp-e2e-{uuid.uuid4().hex[:8]}"
    app = nbqueue.App(
        "amqp-e2e",
        broker=rabbitmq_url,
        backend=redis_url,
        task_default_queue=queue,
        task_queue_max_priority=9,
        worker_prefetch_multiplier=1,
    )
    try:
        yield app
    finally:
        app.close()
        delete_names(rabbitmq_url, [queue])


# Module-level functions, so they are importable and travel as JSON (a closure would be
# shipped by value, with copies of the lists below).
GATE = threading.Event()
SEEN: list[tuple[str, bool]] = []
ORDER: list[int] = []


def add(x: int, y: int) -> int:
    return x + y


def tsum(values: list[int]) -> int:
    return sum(values)


def flaky(self: Any, succeed_on: int) -> int:
    if self.request.retries < succeed_on:
        raise self.retry(countdown=0.1)
    return self.request.retries


def hold(self: Any) -> str:
    """Blocks on its first delivery; a redelivered copy returns at once."""
    redelivered = bool(self.request.delivery_info.get("redelivered"))
    SEEN.append((self.request.hostname, redelivered))
    if not redelivered:
        GATE.wait(60)
        return "first delivery"
    return "redelivered"


def note(value: int) -> None:
    ORDER.append(value)


def _register(app: Any) -> dict[str, Any]:
    GATE.clear()
    SEEN.clear()
    ORDER.clear()
    return {
        "add": app.task(name="amqp.add")(add),
        "tsum": app.task(name="amqp.tsum")(tsum),
        "flaky": app.task(name="amqp.flaky", bind=True, max_retries=5)(flaky),
        "hold": app.task(name="amqp.hold", bind=True, acks_late=True)(hold),
        "note": app.task(name="amqp.note")(note),
    }


def test_tasks_groups_chords_and_retries_run_over_amqp(amqp_app: Any) -> None:
    t = _register(amqp_app)
    with amqp_app.worker(concurrency=2, hostname="amqp1@e2e") as worker:
        assert t["add"].delay(2, 3).get(timeout=30) == 5
        group = nbqueue.group(t["add"].s(i, i) for i in range(10)).apply_async()
        assert group.get(timeout=30) == [2 * i for i in range(10)]
        chord = nbqueue.chord(t["add"].s(i, 1) for i in range(5))(t["tsum"].s())
        assert chord.get(timeout=30) == sum(range(1, 6))
        assert t["flaky"].delay(2).get(timeout=30) == 2
        assert worker.drain(timeout=30)
        assert worker.queue_sizes() == {amqp_app.conf.task_default_queue: 0}
    assert worker.stats["invalid"] == worker.stats["unknown"] == 0


def test_priorities_count_on_a_queue_declared_with_x_max_priority(amqp_app: Any) -> None:
    t = _register(amqp_app)
    results = [t["note"].apply_async((p,), priority=p) for p in (0, 9, 5, 2, 7)]
    with amqp_app.worker(concurrency=1, hostname="amqp-prio@e2e"):
        for result in results:
            result.get(timeout=30)
    assert ORDER == [9, 7, 5, 2, 0]


def test_an_acks_late_task_comes_back_redelivered_when_its_workers_channel_closes(
    amqp_app: Any,
) -> None:
    t = _register(amqp_app)
    first = amqp_app.worker(concurrency=1, hostname="amqp-first@e2e").start()
    try:
        result = t["hold"].delay()
        wait_for(lambda: SEEN, timeout=30, message="the first delivery to start")
    finally:
        first.terminate()  # cold: the running task is abandoned, its channel closes unacked
    with amqp_app.worker(concurrency=1, hostname="amqp-second@e2e"):
        assert result.get(timeout=30) == "redelivered"
    GATE.set()  # let the abandoned first run end
    assert SEEN == [("amqp-first@e2e", False), ("amqp-second@e2e", True)]


def test_a_queue_declared_without_x_max_priority_is_a_clear_error(amqp_app: Any) -> None:
    from kombu import Connection, Queue

    from nbqueue.exceptions import BrokerError

    t = _register(amqp_app)
    name = amqp_app.conf.task_default_queue
    with Connection(amqp_app.conf.broker_url) as conn:  # an older declaration, no priorities
        Queue(name)(conn.default_channel).declare()
    with pytest.raises(BrokerError, match=r"PRECONDITION_FAILED.*x-max-priority"):
        t["add"].delay(1, 2)
