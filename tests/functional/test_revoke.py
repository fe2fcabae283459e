"""Revoke, terminate and expiry: what never runs, what stops running, and who is told."""

from __future__ import annotations

import signal
import threading
import types
from datetime import datetime, timedelta, timezone

import pytest

import nbqueue
from nbqueue import states
from nbqueue.exceptions import ChordError, TaskRevokedError
from tests.helpers import wait_for


def python_step() -> None:
    """A Python-level call: CPython delivers a pending asynchronous exception here."""


def record_events(worker):
    """Capture the task events the worker emits (the Events step is not needed for this)."""
    events = []
    worker.emit_task_event = lambda type_, task_id, **fields: events.append(
        {"type": type_, "uuid": task_id, **fields}
    )
    return events


def in_process_control(app, worker):
    """``app.control.revoke`` delivered straight to `worker` (the pidbox is another step's)."""
    app._control = types.SimpleNamespace(
        revoke=lambda ids, terminate=False, signal="SIGTERM", **kw: worker.revoke(
            ids, terminate=terminate, signal=signal
        )
    )


def test_terminate_stops_a_running_task_even_through_except_exception(app):
    stop = threading.Event()
    running = threading.Event()
    threads = []
    revoked = []
    app.signals.task_revoked.connect(lambda sender, **kw: revoked.append(kw))

    @app.task
    def stubborn():
        threads.append(threading.current_thread())
        running.set()
        while True:
            try:
                stop.wait(0.005)
                python_step()
            except Exception:
                continue

    @app.task
    def echo(x):
        return x

    with app.worker(concurrency=1) as worker:
        events = record_events(worker)
        result = stubborn.delay()
        assert running.wait(10)
        assert worker.revoke(result.id, terminate=True, signal="SIGKILL") == [result.id]
        with pytest.raises(TaskRevokedError):
            result.get(timeout=10)
        threads[0].join(10)
        assert not threads[0].is_alive()  # Python code: the thread really stopped
        assert echo.delay(5).get(timeout=10) == 5  # and the pool still has its thread
        assert len(worker.steps["pool"].pool.threads) == 1
        assert worker.drain(10)
    stop.set()
    (info,) = revoked
    assert info["terminated"] is True and info["expired"] is False
    assert info["signum"] == signal.SIGKILL and info["request"].id == result.id
    (event,) = [e for e in events if e["type"] == "task-revoked"]
    assert event == {
        "type": "task-revoked",
        "uuid": result.id,
        "terminated": True,
        "signum": int(signal.SIGKILL),
        "expired": False,
    }
    assert app.backend.get_meta(result.id)["status"] == states.REVOKED
    assert not app.broker.space.unacked


def test_terminate_frees_the_slot_of_a_task_blocked_in_c(app):
    gate = threading.Event()
    running = threading.Event()

    @app.task(acks_late=True)
    def blocked():
        running.set()
        gate.wait()
        python_step()

    @app.task
    def echo(x):
        return x

    with app.worker(concurrency=1) as worker:
        result = blocked.delay()
        assert running.wait(10)
        worker.revoke([result.id], terminate=True)
        with pytest.raises(TaskRevokedError):
            result.get(timeout=10)
        assert echo.delay(1).get(timeout=10) == 1
        assert not app.broker.space.unacked  # the acks_late message was acked (Celery)
        gate.set()
        assert worker.drain(10)
    assert app.backend.get_meta(result.id)["status"] == states.REVOKED


def test_terminate_of_a_finished_or_unknown_task_does_nothing(app):
    @app.task
    def quick():
        return 1

    with app.worker(concurrency=1) as worker:
        result = quick.delay()
        assert result.get(timeout=10) == 1
        assert worker.revoke([result.id, "unknown-id"], terminate=True) == []
    assert result.state == states.SUCCESS


def test_expired_messages_are_acked_stored_revoked_and_announced(app):
    gate = threading.Event()
    ran = []

    @app.task
    def blocker():
        gate.wait(10)

    @app.task
    def victim(i):
        ran.append(i)

    with app.worker(concurrency=1, prefetch_multiplier=4) as worker:
        events = record_events(worker)
        blocker.delay()
        expired_on_arrival = victim.apply_async((1,), expires=-1)
        deadline = datetime.now(timezone.utc) + timedelta(seconds=0.3)
        expired_in_pool = victim.apply_async((2,), expires=deadline)
        wait_for(lambda: expired_in_pool.id in worker.state.reserved)
        # it expires while it waits behind the blocker
        wait_for(lambda: datetime.now(timezone.utc) > deadline)
        gate.set()
        for result in (expired_on_arrival, expired_in_pool):
            with pytest.raises(TaskRevokedError, match="expired"):
                result.get(timeout=10)
        assert worker.drain(10)
    assert ran == []
    revoked = [e for e in events if e["type"] == "task-revoked"]
    assert {e["uuid"] for e in revoked} == {expired_on_arrival.id, expired_in_pool.id}
    assert all(e["expired"] is True and e["terminated"] is False for e in revoked)
    assert not app.broker.space.unacked


def test_group_result_revoke_reaches_every_member(app):
    gate = threading.Event()
    ran = []

    @app.task
    def blocker():
        gate.wait(10)

    @app.task
    def member(i):
        ran.append(i)
        return i

    with app.worker(concurrency=1, prefetch_multiplier=8) as worker:
        in_process_control(app, worker)
        blocker.delay()
        result = nbqueue.group(member.s(i) for i in range(4)).apply_async()
        result.revoke()
        gate.set()
        for member_result in result:
            with pytest.raises(TaskRevokedError):
                member_result.get(timeout=10)
        assert worker.drain(10)
    assert ran == []


def test_revoking_a_chord_header_task_fails_the_body_with_a_chord_error(app):
    gate = threading.Event()
    errors = []

    @app.task
    def blocker():
        gate.wait(10)

    @app.task
    def part(i):
        return i

    @app.task
    def total(values):
        return sum(values)

    @app.task
    def on_error(request, exc, traceback):
        errors.append(exc)

    with app.worker(concurrency=1, prefetch_multiplier=8) as worker:
        blocker.delay()
        body = total.s()
        body.link_error(on_error.s())
        result = nbqueue.chord([part.s(1), part.s(2), part.s(3)], body).apply_async()
        worker.revoke(result.parent.results[1].id)
        gate.set()
        with pytest.raises(ChordError, match=r"Dependency .* raised TaskRevokedError"):
            result.get(timeout=10)
        assert worker.drain(10)
    assert [type(e) for e in errors] == [ChordError]
    assert result.parent.results[0].get(timeout=1) == 1
