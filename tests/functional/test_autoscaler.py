"""Autoscaler step: grows the pool under a backlog, shrinks it after a keepalive when idle."""

from __future__ import annotations

import threading

import pytest

from nbqueue.worker.steps.autoscaler import Autoscaler
from tests.helpers import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gated(app):
    gate = threading.Event()

    @app.task(name="gated")
    def gated(i):
        assert gate.wait(20)
        return i

    return gated, gate


def _threads(worker) -> int:
    return len(worker.steps["pool"].pool.threads)


def test_disabled_unless_configured(app):
    worker = app.worker(concurrency=2)
    rows = {r["name"]: r for r in worker.blueprint.describe()}
    assert rows["autoscaler"]["state"] == "disabled"
    assert rows["autoscaler"]["requires"] == ["timer", "pool"]
    with worker:
        assert worker.blueprint.worker.state_of("autoscaler") == "disabled"
        assert "autoscaler" not in worker.statistics()
        with pytest.raises(ValueError, match="Autoscale not enabled"):
            worker.set_autoscale(4, 1)


def test_grows_to_the_backlog_and_shrinks_only_after_the_keepalive(app):
    clock = FakeClock()
    app.steps["worker"].add(Autoscaler, interval=3600, keepalive=30, clock=clock)
    gated, gate = _gated(app)
    with app.worker(autoscale=(4, 1), prefetch_multiplier=1) as worker:
        scaler = worker.steps["autoscaler"]
        assert worker.steps["pool"].pool.size == 1
        assert worker.steps["tasks"].prefetch_count == 4  # sized for max, like Celery
        results = [gated.delay(i) for i in range(6)]
        # early acks: one running (acked) plus four unacked reserved
        wait_for(lambda: scaler.qty == 5, message="five requests held")
        assert scaler.tick() == 3
        assert worker.statistics()["pool"]["max-concurrency"] == 4
        wait_for(lambda: len(worker.state.active) == 4, message="four tasks running at once")
        # the early acks freed prefetch room: the consumer fetches the sixth in its own time
        wait_for(lambda: scaler.qty == 6, message="the sixth request fetched")
        assert worker.statistics()["autoscaler"] == {"max": 4, "min": 1, "current": 4, "qty": 6}
        assert scaler.tick() == 0  # already at max
        gate.set()
        assert [r.get(timeout=10) for r in results] == list(range(6))
        assert worker.drain(10)
        clock.now += 1
        scaler.tick()  # notices the finished work: the keepalive starts now
        clock.now += 29
        assert scaler.tick() == 0
        clock.now += 1
        assert scaler.tick() == -3
        wait_for(lambda: _threads(worker) == 1, message="three pool threads gone")
        assert worker.statistics()["autoscaler"]["current"] == 1
        assert (scaler.scaled_up, scaler.scaled_down) == (3, 3)


def test_scales_on_its_own_timer(app):
    app.steps["worker"].add(Autoscaler, interval=0.02, keepalive=0.05)
    gated, gate = _gated(app)
    with app.worker(autoscale=(3, 1)) as worker:
        results = [gated.delay(i) for i in range(3)]
        wait_for(lambda: _threads(worker) == 3, message="the pool grown to three threads")
        wait_for(lambda: len(worker.state.active) == 3, message="three tasks running at once")
        gate.set()
        assert [r.get(timeout=10) for r in results] == [0, 1, 2]
        wait_for(lambda: _threads(worker) == 1, message="the pool shrunk back to one thread")


def test_update_changes_bounds_prefetch_and_size_at_once(app):
    app.steps["worker"].add(Autoscaler, interval=3600)
    with app.worker(autoscale=(4, 1), prefetch_multiplier=2) as worker:
        assert worker.set_autoscale(6, 3) == (6, 3)
        assert worker.steps["pool"].pool.size == 3
        assert worker.steps["tasks"].prefetch_count == 12
        assert worker.set_autoscale(2, 1) == (2, 1)
        assert worker.steps["pool"].pool.size == 2
        assert worker.steps["tasks"].prefetch_count == 4
        with pytest.raises(ValueError, match="below min"):
            worker.set_autoscale(1, 5)
        assert worker.steps["autoscaler"].info()["max"] == 2
        wait_for(lambda: _threads(worker) == 2, message="pool threads follow the new bounds")


def test_bad_bounds_name_the_step(app):
    from nbqueue.exceptions import BootstepError

    with pytest.raises(BootstepError, match=r"'autoscaler' could not be created.*below min"):
        app.worker(autoscale=(1, 3))
