"""The embedded default end to end: an app, tasks, an in-process worker, results."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import nbqueue
from nbqueue import states
from nbqueue.exceptions import NotRegistered, TimeoutError
from tests.helpers import wait_for


def test_the_issue_example(app):
    @app.task
    def add(x, y):
        return x + y

    with app.worker(concurrency=4):
        assert add.delay(2, 3).get(timeout=10) == 5
        rs = [add.delay(i, i) for i in range(1000)]
        assert [r.get(timeout=30) for r in rs] == [2 * i for i in range(1000)]


def test_start_returns_once_consuming_and_stop_drives_every_step_to_stopped(app):
    worker = app.worker(concurrency=2)
    disabled = {r["name"] for r in worker.blueprint.describe() if r["state"] == "disabled"}
    # conditional steps left off show as disabled
    assert disabled == {"autoscaler", "statedb", "autoreloader", "beat", "agent"}

    def included():
        return [r for r in worker.blueprint.describe() if r["name"] not in disabled]

    assert all(r["state"] == "pending" for r in included())
    worker.start()
    try:
        rows = included()
        assert [r["name"] for r in rows][:4] == ["timer", "hub", "pool", "consumer"]
        assert {r["blueprint"] for r in rows} == {"worker", "consumer"}
        assert all(r["state"] == "running" for r in rows)
    finally:
        worker.stop()
    assert all(r["state"] == "stopped" for r in included())
    assert {r["name"] for r in worker.blueprint.describe() if r["state"] == "disabled"} == disabled
    assert worker.status == "stopped"


def test_failures_reraise_the_original_exception_with_the_remote_traceback(app):
    @app.task
    def boom(x):
        raise KeyError(f"no {x}")

    with app.worker(concurrency=1):
        result = boom.delay("key")
        with pytest.raises(KeyError, match="no key") as info:
            result.get(timeout=10)
    assert isinstance(info.value.__cause__, nbqueue.exceptions.RemoteTraceback)
    assert "raise KeyError" in info.value.__cause__.tb
    assert result.state == states.FAILURE and result.failed()
    assert isinstance(result.result, KeyError)
    assert "Traceback" in result.traceback
    assert isinstance(result.get(propagate=False), KeyError)


def test_get_times_out_with_a_clear_error(app):
    @app.task
    def never():
        return 1

    result = never.delay()  # no worker
    with pytest.raises(TimeoutError, match=r"not ready after 0\.1 s"):
        result.get(timeout=0.1)
    assert result.state == states.PENDING


def test_bound_task_sees_its_request(app):
    seen = {}

    @app.task(bind=True)
    def who(self, x, *, y=0):
        req = self.request
        seen.update(
            id=req.id,
            args=list(req.args),
            kwargs=req.kwargs,
            retries=req.retries,
            hostname=req.hostname,
            root_id=req.root_id,
            parent_id=req.parent_id,
            delivery_info=req.delivery_info,
            called_directly=req.called_directly,
        )
        return x + y

    with app.worker(concurrency=1, hostname="w@test") as worker:
        result = who.apply_async((1,), {"y": 2})
        assert result.get(timeout=10) == 3
    assert seen["id"] == result.id == seen["root_id"]
    assert seen["args"] == [1] and seen["kwargs"] == {"y": 2}
    assert seen["hostname"] == worker.hostname == "w@test"
    assert seen["delivery_info"]["routing_key"] == "celery"
    assert seen["called_directly"] is False and seen["retries"] == 0


def test_subtasks_carry_parent_and_root_ids_and_are_children(app):
    @app.task
    def leaf(x):
        return x

    @app.task(bind=True)
    def parent(self):
        leaf.delay(1)
        return self.request.id

    with app.worker(concurrency=2) as worker:
        result = parent.delay()
        result.get(timeout=10)
        worker.drain(10)
        (child,) = result.children
        assert child.get(timeout=10) == 1
    meta = app.backend.get_meta(child.id)
    assert meta["parent_id"] == result.id


def test_apply_runs_here_through_the_worker_path(app):
    calls = []
    app.signals.task_prerun.connect(lambda sender, **kw: calls.append(("prerun", kw["task_id"])))
    app.signals.task_success.connect(lambda sender, **kw: calls.append(("success", kw["result"])))

    @app.task(bind=True)
    def mul(self, x, y):
        calls.append(("run", self.request.is_eager, threading.current_thread().name))
        return x * y

    result = mul.apply((6, 7))
    assert result.get() == 42 and result.successful()
    assert calls[0] == ("prerun", result.id)
    assert calls[1] == ("run", True, threading.current_thread().name)
    assert calls[2] == ("success", 42)
    with pytest.raises(TypeError):
        mul.apply((1,)).get()  # the function's own TypeError, stored as the outcome


def test_apply_propagates_when_asked(app):
    @app.task
    def fail():
        raise ValueError("eager")

    result = fail.apply()
    assert result.failed() and isinstance(result.result, ValueError)
    with pytest.raises(ValueError, match="eager"):
        fail.apply(throw=True)


def test_send_task_by_name_and_unknown_names_fail_like_celery(app, caplog):
    @app.task(name="math.add")
    def add(x, y):
        return x + y

    with app.worker(concurrency=1):
        assert app.send_task("math.add", (1, 2)).get(timeout=10) == 3
        with caplog.at_level(logging.ERROR):
            missing = app.send_task("math.nope", (1,))
            with pytest.raises(NotRegistered, match=r"math\.nope"):
                missing.get(timeout=10)
        assert "unregistered task of type 'math.nope'" in caplog.text
        assert add.delay(2, 2).get(timeout=10) == 4  # and the worker carries on


def test_wrong_arguments_are_refused_when_sending(app):
    @app.task
    def add(x, y):
        return x + y

    with pytest.raises(TypeError, match="missing a required argument"):
        add.delay(1)


def test_link_and_link_error_callbacks(app):
    got = []

    @app.task
    def add(x, y):
        return x + y

    @app.task
    def record(value):
        got.append(value)
        return value

    @app.task
    def fail():
        raise RuntimeError("x")

    with app.worker(concurrency=2) as worker:
        add.apply_async((1, 2), link=record.s()).get(timeout=10)
        failing = fail.apply_async(link_error=record.s())
        with pytest.raises(RuntimeError):
            failing.get(timeout=10)
        assert worker.drain(10)
    assert sorted(got, key=str) == sorted([3, failing.id], key=str)


def test_several_workers_in_one_process_each_with_its_own_state(app):
    @app.task(bind=True)
    def where(self):
        return self.request.hostname

    with (
        app.worker(concurrency=1, hostname="a@x") as a,
        app.worker(concurrency=1, hostname="b@x") as b,
    ):
        hosts = {where.delay().get(timeout=10) for _ in range(60)}
        assert a.state is not b.state
        assert a.state.processed + b.state.processed == 60
    assert hosts <= {"a@x", "b@x"}


def test_two_apps_are_fully_isolated():
    one, two = nbqueue.App("one"), nbqueue.App("two")
    try:

        @one.task(name="shared.name")
        def first():
            return "one"

        @two.task(name="shared.name")
        def second():
            return "two"

        with one.worker(concurrency=1), two.worker(concurrency=1):
            results = [first.delay() for _ in range(20)] + [second.delay() for _ in range(20)]
            values = [r.get(timeout=10) for r in results]
        assert values == ["one"] * 20 + ["two"] * 20
        assert one.broker.space is not two.broker.space
        assert one.backend is not two.backend
    finally:
        one.close()
        two.close()


def test_idle_worker_gets_a_message_in_well_under_10_ms(app):
    @app.task
    def ping():
        return time.perf_counter()

    with app.worker(concurrency=1):
        ping.delay().get(timeout=10)
        delays = []
        for _ in range(20):
            sent = time.perf_counter()
            delays.append(ping.delay().get(timeout=10) - sent)
    delays.sort()
    assert delays[len(delays) // 2] < 0.010, delays  # median: no 1 s poll anywhere


def test_ignore_result_stores_nothing(app):
    @app.task(ignore_result=True)
    def quiet():
        return 1

    with app.worker(concurrency=1) as worker:
        result = quiet.delay()
        assert worker.drain(10)
    assert result.state == states.PENDING


def test_track_started_stores_started_with_pid_and_hostname(app):
    app.conf.task_track_started = True
    gate = threading.Event()
    started = threading.Event()

    @app.task
    def slow():
        started.set()
        gate.wait(10)
        return "done"

    with app.worker(concurrency=1, hostname="t@h"):
        result = slow.delay()
        assert started.wait(10)
        assert result.state == states.STARTED
        assert result.info["hostname"] == "t@h"
        gate.set()
        assert result.get(timeout=10) == "done"


def test_group_result_collects_in_order(app):
    @app.task
    def square(x):
        return x * x

    with app.worker(concurrency=4):
        group = nbqueue.group(square.s(i) for i in range(10))
        result = group.apply_async()
        assert result.get(timeout=10) == [i * i for i in range(10)]
        assert result.completed_count() == 10 and result.successful()


def test_progress_states_are_stored_and_visible(app):
    gate = threading.Event()

    @app.task(bind=True)
    def work(self, n):
        for i in range(n):
            self.progress(i + 1, n)
        gate.wait(10)
        return n

    with app.worker(concurrency=1):
        result = work.delay(3)
        wait_for(lambda: result.state == "PROGRESS" and result.info["current"] == 3)
        assert result.info == {"current": 3, "total": 3}
        gate.set()
        assert result.get(timeout=10) == 3


def test_revoked_ids_never_run_whether_queued_reserved_or_eta_held(app):
    gate = threading.Event()
    ran = []

    @app.task
    def blocker():
        gate.wait(10)

    @app.task
    def victim(i):
        ran.append(i)

    with app.worker(concurrency=1, prefetch_multiplier=4) as worker:
        blocker.delay()
        reserved = victim.delay(1)  # waits in the pool's queue behind the blocker
        eta = victim.apply_async((2,), countdown=0.3)
        wait_for(lambda: reserved.id in worker.state.reserved and eta.id in worker.state.scheduled)
        assert sorted(worker.revoke([reserved.id, eta.id])) == sorted([reserved.id, eta.id])
        queued = victim.delay(3)
        worker.revoke(queued.id)
        gate.set()
        for result in (reserved, eta, queued):
            with pytest.raises(nbqueue.exceptions.TaskRevokedError):
                result.get(timeout=10)
        assert worker.drain(10)
    assert ran == []
    assert not app.broker.space.unacked


def test_add_and_cancel_consumer_at_runtime(app):
    @app.task(queue="extra")
    def elsewhere():
        return "extra"

    with app.worker(concurrency=1) as worker:
        result = elsewhere.delay()
        worker.add_consumer("extra")
        assert result.get(timeout=10) == "extra"
        assert worker.queues == ("celery", "extra")
        worker.cancel_consumer("extra")
        later = elsewhere.delay()
        assert worker.drain(10)
        assert later.state == states.PENDING
        assert app.broker.space.sizes()["extra"] == 1
