"""A running worker stops one consumer step and starts it again: `worker.stop_step("tasks")`
leaves messages waiting in the queue, `start_step` lets them run."""

from __future__ import annotations

import pytest

from nbqueue.exceptions import BootstepError, ImproperlyStarted


def test_stopping_the_task_consumer_leaves_messages_waiting_until_it_starts(app):
    @app.task
    def double(x):
        return 2 * x

    with app.worker(concurrency=2) as worker:
        assert double.delay(1).get(timeout=10) == 2
        assert worker.stop_step("tasks") == ["tasks", "control"]
        states = {row["name"]: row["state"] for row in worker.blueprint.describe()}
        assert states["tasks"] == states["control"] == "stopped"
        assert states["connection"] == states["pool"] == "running"
        results = [double.delay(i) for i in range(5)]
        assert worker.queue_sizes() == {"celery": 5}  # nobody takes them
        assert all(r.state == "PENDING" for r in results)
        assert worker.start_step("tasks") == ["tasks", "control"]
        assert [r.get(timeout=10) for r in results] == [0, 2, 4, 6, 8]
    assert {row["state"] for row in worker.blueprint.describe()} <= {"stopped", "disabled"}


def test_worker_steps_and_stopped_workers_say_what_to_do(app):
    worker = app.worker()
    with pytest.raises(ImproperlyStarted, match="is created, not running"):
        worker.stop_step("tasks")
    with worker:
        with pytest.raises(BootstepError, match="'pool' is a worker step"):
            worker.stop_step("pool")
        with pytest.raises(BootstepError, match="consumer blueprint has no step 'nope'"):
            worker.start_step("nope")
