"""Rate limits per task type: held on the timer, never in the way of other task types."""

from __future__ import annotations

import time

import pytest

from nbqueue.exceptions import ConfigurationError, NotRegistered
from nbqueue.worker.ratelimit import parse_rate
from tests.helpers import wait_for


@pytest.mark.parametrize(
    ("value", "per_second"),
    [
        ("10/s", 10.0),
        ("100/m", 100 / 60),
        ("1000/h", 1000 / 3600),
        ("5", 5.0),
        (2, 2.0),
        (None, 0.0),
        ("0/s", 0.0),
    ],
)
def test_parse_rate_reads_celerys_notation(value, per_second):
    assert parse_rate(value) == pytest.approx(per_second)


@pytest.mark.parametrize("value", ["fast", "10/d", "x/s"])
def test_parse_rate_refuses_anything_else(value):
    with pytest.raises(ConfigurationError, match="not like '10/s'"):
        parse_rate(value)


def held(worker, name):
    return worker.steps["tasks"].handler.rate_limits.info().get(name, {}).get("held", 0)


def test_held_requests_never_block_other_task_types_and_a_new_limit_applies_at_once(app):
    ran = []

    @app.task(rate_limit="1/m")
    def limited(i):
        ran.append(i)
        return i

    @app.task
    def free(i):
        return i

    # one slot, prefetch 1: without raising the prefetch limit, one held message would
    # take all the room the consumer has and the free tasks would never arrive
    with app.worker(concurrency=1, prefetch_multiplier=1) as worker:
        tasks = worker.steps["tasks"]
        waiting = [limited.delay(i) for i in range(3)]
        frees = [free.delay(i) for i in range(50)]
        assert [r.get(timeout=10) for r in frees] == list(range(50))
        wait_for(lambda: held(worker, limited.name) == 2)
        assert ran == [0]  # the bucket starts with one token
        assert tasks.prefetch_count == 1 + 2
        worker.set_rate_limit(limited.name, None)  # lifted: the held ones go now
        assert [r.get(timeout=10) for r in waiting] == [0, 1, 2]
        assert worker.drain(10)
        assert tasks.prefetch_count == 1
    assert sorted(ran) == [0, 1, 2]


def test_requests_are_spaced_by_the_rate(app):
    starts = []

    @app.task(rate_limit="20/s")
    def paced(i):
        starts.append(time.monotonic())
        return i

    with app.worker(concurrency=4):
        results = [paced.delay(i) for i in range(10)]
        assert [r.get(timeout=20) for r in results] == list(range(10))
    span = max(starts) - min(starts)
    assert span >= 9 / 20 * 0.95  # one token at once, then one every 50 ms


def test_a_limit_set_at_runtime_holds_the_next_requests(app):
    @app.task
    def work(i):
        return i

    with app.worker(concurrency=2) as worker:
        assert work.delay(0).get(timeout=10) == 0
        worker.set_rate_limit(work.name, "1/h")
        results = [work.delay(i) for i in range(1, 4)]
        assert results[0].get(timeout=10) == 1  # the bucket's first token
        wait_for(lambda: held(worker, work.name) == 2)
        worker.set_rate_limit(work.name, "1000/s")
        assert [r.get(timeout=10) for r in results] == [1, 2, 3]


def test_set_rate_limit_refuses_unknown_tasks_and_malformed_rates(app):
    @app.task
    def known():
        return 1

    worker = app.worker(concurrency=1)
    with pytest.raises(NotRegistered):
        worker.set_rate_limit("no.such.task", "1/s")
    with pytest.raises(ConfigurationError):
        worker.set_rate_limit(known.name, "often")
    assert known.name not in worker.rate_limits


def test_a_warm_stop_returns_held_messages_to_the_queue(app):
    @app.task(rate_limit="1/h")
    def rare(i):
        return i

    with app.worker(concurrency=1) as worker:
        results = [rare.delay(i) for i in range(3)]
        assert results[0].get(timeout=10) == 0
        wait_for(lambda: held(worker, rare.name) == 2)
    waiting = app.broker.space.peek("celery")
    assert [m["headers"]["id"] for m in waiting] == [r.id for r in results[1:]]
    assert not app.broker.space.unacked


def test_worker_disable_rate_limits_turns_them_off(app):
    app.conf.worker_disable_rate_limits = True

    @app.task(rate_limit="1/h")
    def rare(i):
        return i

    with app.worker(concurrency=2):
        assert [rare.delay(i).get(timeout=10) for i in range(3)] == [0, 1, 2]


def test_eta_tasks_come_due_through_the_rate_limit(app):
    @app.task(rate_limit="1/h")
    def rare(i):
        return i

    with app.worker(concurrency=1) as worker:
        assert rare.delay(0).get(timeout=10) == 0
        later = rare.apply_async((1,), countdown=0.1)
        wait_for(lambda: held(worker, rare.name) == 1, message="the due ETA task held")
        assert not later.ready()
        worker.set_rate_limit(rare.name, None)
        assert later.get(timeout=10) == 1
