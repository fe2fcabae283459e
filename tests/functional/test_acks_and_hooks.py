"""Acknowledgement exactly as Celery documents it, and hooks and signals in Celery's order."""

from __future__ import annotations

import logging
import threading

import pytest

import nbqueue
from nbqueue import states
from nbqueue.exceptions import Ignore, Reject
from tests.helpers import wait_for


def record_events(worker):
    events = []
    worker.task_events_enabled = lambda: True  # as if task events were on and heard
    worker.emit_task_event = lambda type_, task_id, **fields: events.append((type_, fields))
    return events


def test_reject_without_requeue_is_a_failure_like_celery_57(app):
    failures = []
    app.signals.task_failure.connect(lambda sender, **kw: failures.append(kw["exception"]))

    @app.task
    def refuse():
        raise Reject("nope", requeue=False)

    with app.worker(concurrency=1) as worker:
        events = record_events(worker)
        result = refuse.delay()
        with pytest.raises(Reject):
            result.get(timeout=10)
        assert worker.drain(10)
    assert [type(e) for e in failures] == [Reject]
    assert [t for t, _ in events if t not in ("task-received", "task-started")] == ["task-failed"]
    assert not app.broker.space.unacked
    assert app.broker.space.sizes().get("celery", 0) == 0


def test_reject_with_requeue_under_acks_late_puts_the_message_back(app):
    runs = []

    @app.task(acks_late=True, bind=True)
    def picky(self):
        runs.append(self.request.delivery_info["redelivered"])
        if len(runs) == 1:
            raise Reject("not now", requeue=True)
        return "second time"

    with app.worker(concurrency=1) as worker:
        events = record_events(worker)
        result = picky.delay()
        assert result.get(timeout=10) == "second time"
        assert worker.drain(10)
    assert runs == [False, True]
    assert ("task-rejected", {"requeue": True}) in events
    assert not app.broker.space.unacked


def test_acks_late_failure_is_acked_or_dropped_as_acks_on_failure_says(app):
    @app.task(acks_late=True)
    def fails():
        raise RuntimeError("boom")

    @app.task(acks_late=True, acks_on_failure=False)
    def fails_rejected():
        raise RuntimeError("boom")

    with app.worker(concurrency=1) as worker:
        events = record_events(worker)
        for task in (fails, fails_rejected):
            with pytest.raises(RuntimeError):
                task.delay().get(timeout=10)
        assert worker.drain(10)
    assert [f for t, f in events if t == "task-rejected"] == [{"requeue": False}]
    assert not app.broker.space.unacked
    assert app.broker.space.sizes().get("celery", 0) == 0  # neither was requeued


def test_ignore_stores_nothing_and_skips_after_return(app):
    calls = []

    class Tracked(nbqueue.Task):
        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            calls.append(status)

    @app.task(base=Tracked)
    def quiet():
        raise Ignore()

    @app.task(base=Tracked)
    def loud():
        return 1

    with app.worker(concurrency=1) as worker:
        ignored = quiet.delay()
        assert loud.delay().get(timeout=10) == 1
        assert worker.drain(10)
    assert ignored.state == states.PENDING
    assert calls == [states.SUCCESS]
    assert not app.broker.space.unacked


def test_prefetch_is_concurrency_times_the_multiplier(app):
    gate = threading.Event()

    @app.task
    def held():
        gate.wait(10)

    with app.worker(concurrency=2, prefetch_multiplier=2) as worker:
        results = [held.delay() for _ in range(10)]
        # early acks: the 2 running are acked, so 4 more unacked ones are reserved
        wait_for(lambda: worker.state.snapshot()["reserved"] == 4)
        assert worker.state.snapshot()["active"] == 2
        assert worker.steps["tasks"].prefetch_count == 4
        assert app.broker.space.sizes()["celery"] == 4
        gate.set()
        for result in results:
            result.get(timeout=10)


def test_hooks_and_signals_run_in_celerys_order(app):
    log = []

    class Hooked(nbqueue.Task):
        def before_start(self, task_id, args, kwargs):
            log.append("before_start")

        def on_success(self, retval, task_id, args, kwargs):
            log.append(("on_success", app.backend.get_meta(task_id)["status"]))

        def on_failure(self, exc, task_id, args, kwargs, einfo):
            log.append(("on_failure", type(exc).__name__))

        def on_retry(self, exc, task_id, args, kwargs, einfo):
            log.append(("on_retry", type(exc).__name__))

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            log.append(("after_return", status))

    for name in ("task_prerun", "task_success", "task_failure", "task_retry", "task_postrun"):
        app.signals[name].connect(lambda sender, _name=name, **kw: log.append(_name))

    @app.task(base=Hooked, bind=True)
    def work(self, mode):
        log.append("run")
        if mode == "fail":
            raise ValueError(mode)
        if mode == "retry" and not self.request.retries:
            raise self.retry(exc=KeyError(mode), countdown=0)
        return mode

    with app.worker(concurrency=1) as worker:
        work.delay("ok").get(timeout=10)
        ok_log, log[:] = list(log), []
        with pytest.raises(ValueError):
            work.delay("fail").get(timeout=10)
        fail_log, log[:] = list(log), []
        work.delay("retry").get(timeout=10)
        assert worker.drain(10)
    run = ["task_prerun", "before_start", "run"]
    assert ok_log == [
        *run,
        ("on_success", states.SUCCESS),
        "task_success",
        ("after_return", states.SUCCESS),
        "task_postrun",
    ]
    assert fail_log == [
        *run,
        ("on_failure", "ValueError"),
        "task_failure",
        ("after_return", states.FAILURE),
        "task_postrun",
    ]
    assert log[: len(run) + 3] == [*run, ("on_retry", "KeyError"), "task_retry", "task_postrun"]


def test_failing_hooks_and_receivers_are_logged_and_the_worker_goes_on(app, caplog):
    class Broken(nbqueue.Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise RuntimeError("hook broke")

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            raise RuntimeError("after_return broke")

    def bad_receiver(sender, **kwargs):
        raise RuntimeError("receiver broke")

    for name in ("task_prerun", "task_postrun", "task_success", "task_received"):
        app.signals[name].connect(bad_receiver)

    @app.task(base=Broken)
    def fine(x):
        return x

    with caplog.at_level(logging.ERROR), app.worker(concurrency=1):
        assert [fine.delay(i).get(timeout=10) for i in range(3)] == [0, 1, 2]
    assert "hook broke" in caplog.text and "receiver broke" in caplog.text
    assert "after_return broke" in caplog.text


def test_task_received_and_task_rejected_signals(app):
    received, rejected = [], []
    app.signals.task_received.connect(lambda sender, request, **kw: received.append(request.id))
    app.signals.task_rejected.connect(lambda sender, message, exc, **kw: rejected.append(exc))

    @app.task
    def echo(x):
        return x

    with app.worker(concurrency=1) as worker:
        result = echo.delay(1)
        assert result.get(timeout=10) == 1
        with app.connection() as conn:
            conn.Producer().publish(
                b"[[1], {}, {}]",
                routing_key="celery",
                headers={"task": echo.name},  # no id: not a task message
                content_type="application/json",
                content_encoding="utf-8",
            )
        wait_for(lambda: rejected)
        assert worker.drain(10)
    assert received == [result.id]
    assert "header 'id'" in str(rejected[0])
