"""Connection step: a broken broker connection restarts only the steps that depend on it."""

from __future__ import annotations

import logging
import threading

from tests.helpers import wait_for


def _break_once(worker) -> threading.Event:
    """Make the next ``drain_events`` of the worker's connection raise a connection error."""
    conn = worker.steps["connection"].connection
    broke = threading.Event()
    original = conn.drain_events

    def drain_events(**kwargs):
        if not broke.is_set():
            broke.set()
            raise conn.connection_errors[0]("simulated: broker connection reset")
        return original(**kwargs)

    conn.drain_events = drain_events
    return broke


def test_a_connection_error_restarts_only_its_dependents_and_consumption_resumes(app, caplog):
    @app.task
    def add(x, y):
        return x + y

    with app.worker(concurrency=1) as worker:
        assert add.delay(1, 1).get(timeout=10) == 2
        changes = []
        worker.blueprint.add_listener(lambda c: changes.append((c.blueprint, c.step, c.state)))
        old_connection = worker.steps["connection"].connection
        with caplog.at_level(logging.ERROR):
            assert _break_once(worker).wait(10)
            wait_for(
                lambda: ("consumer", "tasks", "running") in changes,
                message="the tasks step running again",
            )
        assert "broker connection lost" in caplog.text
        assert worker.steps["connection"].reconnects == 1
        assert worker.steps["connection"].connection is not old_connection
        bp = worker.consumer_blueprint
        restarted = [n for n in bp.dependents("connection") if bp.state_of(n) != "disabled"]
        assert "tasks" in restarted
        assert {step for _, step, _ in changes} == {"connection", *restarted}
        assert {bp for bp, _, _ in changes} == {"consumer"}  # the worker's steps kept running
        tasks = [s for bp, s, st in changes if st == "stopping"]
        assert tasks[-1] == "connection"  # dependents stop first, then the connection
        assert all(r["state"] in ("running", "disabled") for r in worker.blueprint.describe())
        assert [add.delay(i, i).get(timeout=10) for i in range(5)] == [0, 2, 4, 6, 8]


def test_messages_sent_while_the_connection_is_down_are_consumed_after_it(app):
    @app.task
    def echo(x):
        return x

    with app.worker(concurrency=2) as worker:
        broke = _break_once(worker)
        results = [echo.delay(i) for i in range(20)]
        assert broke.wait(10)
        assert [r.get(timeout=10) for r in results] == list(range(20))
        assert worker.drain(10)
        assert not app.broker.space.unacked


def test_a_worker_that_cannot_reconnect_stops_and_says_why(app, caplog, monkeypatch):
    app.conf.broker_connection_retry = False
    with caplog.at_level(logging.ERROR):
        worker = app.worker(concurrency=1).start()
        from kombu import Connection

        unreachable = Connection("redis://127.0.0.1:1/0", connect_timeout=0.5)
        monkeypatch.setattr(app, "connection", lambda **kw: unreachable)
        _break_once(worker)
        assert worker.join(20), "the worker should stop when the broker stays away"
    assert worker.status == "stopped"
    assert "could not reconnect; stopping the worker" in caplog.text
    states = {r["name"]: r["state"] for r in worker.blueprint.describe()}
    assert states["connection"] == "failed"
