"""Events from a running worker: Celery's shapes, batching, heartbeats, task-sent, State."""

from __future__ import annotations

import threading
import time

import pytest

from nbqueue import states
from nbqueue.exceptions import TaskRevokedError
from tests import captures
from tests.eventlog import EventLog
from tests.helpers import wait_for

#: what the envelope adds on receipt; not part of the event as sent
RECEIVER_ADDS = {"local_received"}


#: field names, in order, of each event type a real Celery 5.7 worker and client sent
CELERY_ORDERS = {
    type_: list(event)
    for type_, event in captures.load("celery_events.json")["celery_events_by_type"].items()
}


def _keys(event: dict) -> list[str]:
    return [k for k in event if k not in RECEIVER_ADDS]


def test_task_and_worker_events_have_celerys_fields_in_celerys_order(app):
    app.conf.task_send_sent_event = True

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.fail")
    def fail():
        raise ValueError("kaboom")

    @app.task(name="t.retry", bind=True, max_retries=1)
    def retry(self):
        raise self.retry(countdown=0.01)

    with EventLog(app) as log:
        with app.worker(hostname="ev@test", send_events=True, heartbeat_interval=0.2):
            assert add.delay(2, 3).get(timeout=10) == 5
            with pytest.raises(ValueError):
                fail.delay().get(timeout=10)
            with pytest.raises(Exception):  # noqa: B017 - the retried task fails in the end
                retry.delay().get(timeout=10)
            app.control.revoke("revoked-before-sent", reply=True)  # reply: it has arrived
            revoked = add.apply_async((1, 1), task_id="revoked-before-sent")
            with pytest.raises(TaskRevokedError):
                revoked.get(timeout=10)
            log.wait_type("worker-heartbeat", hostname="ev@test")
        log.wait_type("worker-offline", hostname="ev@test")
        log.wait_type("task-revoked")
    seen = {}
    for event in log.events:
        seen.setdefault(event["type"], _keys(event))
    for type_ in (
        "task-sent",
        "task-received",
        "task-started",
        "task-succeeded",
        "task-failed",
        "task-retried",
        "task-revoked",
        "worker-online",
        "worker-heartbeat",
        "worker-offline",
    ):
        assert seen[type_] == CELERY_ORDERS[type_], type_


def test_event_values_are_celerys_reprs_and_clocks_grow(app):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with EventLog(app) as log:
        with app.worker(hostname="ev@test", send_events=True) as worker:
            result = add.delay(2, 3)
            result.get(timeout=10)
            (done,) = log.wait_type("task-succeeded")
        (received,) = log.of_type("task-received")
    assert done["uuid"] == result.id and done["result"] == "5"  # a repr string
    assert isinstance(done["runtime"], float) and done["runtime"] >= 0
    assert received["args"] == "(2, 3)" and received["kwargs"] == "{}"
    assert received["name"] == "t.add" and received["root_id"] == result.id
    assert done["hostname"] == "ev@test" and done["pid"] == worker.statistics()["pid"]
    expected_offset = -time.localtime().tm_gmtoff / 3600  # hours west of UTC
    assert done["utcoffset"] == expected_offset
    clocks = [e["clock"] for e in log.events if e["hostname"] == "ev@test"]
    assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks)


def test_task_events_travel_batched_on_task_multi_with_celerys_envelope(app):
    @app.task(name="t.noop")
    def noop(i):
        return i

    with EventLog(app) as log, app.worker(hostname="ev@test", send_events=True, concurrency=4):
        results = [noop.delay(i) for i in range(60)]
        for r in results:
            r.get(timeout=10)
        log.wait_type("task-succeeded", count=60)
    task_messages = [raw for raw in log.raw if raw[3]["routing_key"].startswith("task.")]
    assert {raw[3]["routing_key"] for raw in task_messages} == {"task.multi"}
    sizes = [len(body) for body, *_ in task_messages]
    assert max(sizes) <= 24 and sum(sizes) == 180
    assert len(task_messages) < 180  # batched, not one message per event
    _, headers, properties, info = task_messages[0]
    assert headers == {"hostname": "ev@test"}
    assert properties["delivery_mode"] == 1
    assert info["exchange"] == "celeryev"
    worker_messages = [raw for raw in log.raw if raw[3]["routing_key"] == "worker.online"]
    assert isinstance(worker_messages[0][0], dict)  # worker events travel singly


def test_task_events_are_off_unless_asked_and_toggled_by_control(app):
    @app.task(name="t.noop")
    def noop():
        return 1

    with EventLog(app) as log, app.worker(hostname="ev@test", heartbeat_interval=0.2) as worker:
        noop.delay().get(timeout=10)
        log.wait_type("worker-heartbeat", count=2, hostname="ev@test")
        assert not [e for e in log.events if e["type"].startswith("task-")]
        reply = app.control.enable_events(reply=True, destination=[worker.hostname])
        assert reply == [{"ev@test": {"ok": "task events enabled"}}]
        result = noop.delay()
        result.get(timeout=10)
        log.wait(lambda evs: any(e.get("uuid") == result.id for e in evs))
        reply = app.control.disable_events(reply=True, destination=[worker.hostname])
        assert reply == [{"ev@test": {"ok": "task events disabled"}}]
        again = app.control.disable_events(reply=True, destination=[worker.hostname])
        assert again == [{"ev@test": {"ok": "task events already disabled"}}]
        quiet = noop.delay()
        quiet.get(timeout=10)
        log.wait_type("worker-heartbeat", count=4, hostname="ev@test")
    assert not [e for e in log.events if e.get("uuid") == quiet.id]


def test_a_receiver_wakes_workers_up_with_an_immediate_heartbeat(app):
    with app.worker(hostname="ev@test", heartbeat_interval=3600), EventLog(app, wakeup=True) as log:
        (beat,) = log.wait_type("worker-heartbeat", hostname="ev@test")
    assert beat["freq"] == 5  # the heartbeat command's, as in Celery
    assert {"sw_ident", "sw_ver", "sw_sys"} <= set(beat)
    assert "active" not in beat


def test_an_idle_worker_sends_heartbeats_at_its_rate_and_nothing_else(app):
    interval = 0.1
    with EventLog(app) as log, app.worker(hostname="idle@test", heartbeat_interval=interval):
        online = log.wait_type("worker-online", hostname="idle@test")[0]
        beats = log.wait_type("worker-heartbeat", count=8, hostname="idle@test")
        sizes = app.broker.space.sizes()
    types = {e["type"] for e in log.events if e["local_received"] <= beats[7]["local_received"]}
    assert types == {"worker-online", "worker-heartbeat"}
    span = beats[7]["timestamp"] - online["timestamp"]
    assert span >= 8 * interval * 0.9  # never faster than configured (late is the OS's doing)
    assert all(b["freq"] == interval for b in beats)
    assert sizes.get("celery", 0) == 0  # no task traffic either


def test_heartbeat_sent_signal_fires_for_every_heartbeat(app):
    seen = threading.Semaphore(0)
    app.signals.heartbeat_sent.connect(lambda sender, **kw: seen.release())
    with app.worker(heartbeat_interval=0.05):
        for _ in range(3):
            assert seen.acquire(timeout=10)


def test_task_sent_events_come_from_the_client_when_enabled(app):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with EventLog(app) as log:
        silent = add.delay(1, 1)
        app.conf.task_send_sent_event = True
        sent = add.apply_async((2, 2), queue="other", countdown=5)
        (event,) = log.wait_type("task-sent")
    assert event["uuid"] == sent.id and event["uuid"] != silent.id
    assert event["hostname"].startswith("gen") and event["name"] == "t.add"
    assert event["queue"] == "other" and event["routing_key"] == "other"
    assert event["exchange"] == "" and event["eta"] is not None
    assert event["args"] == "(2, 2)"


def test_the_state_follows_tasks_through_their_lifecycle(app):
    gate = threading.Event()

    @app.task(name="t.gated")
    def gated():
        assert gate.wait(10)
        return "done"

    @app.task(name="t.fail")
    def fail():
        raise KeyError("nope")

    with EventLog(app) as log:
        with app.worker(hostname="st@test", send_events=True, concurrency=2):
            state = log.state
            running = gated.delay()
            wait_for(lambda: running.id in state.tasks and state.tasks[running.id].started)
            task = state.tasks[running.id]
            assert task.state == states.STARTED and task.name == "t.gated"
            assert task.worker.hostname == "st@test"
            gate.set()
            running.get(timeout=10)
            failed = fail.delay()
            with pytest.raises(KeyError):
                failed.get(timeout=10)
            wait_for(lambda: state.tasks.get(failed.id) and state.tasks[failed.id].ready)
            assert [w.hostname for w in state.alive_workers()] == ["st@test"]
        log.wait_type("worker-offline", hostname="st@test")
    assert state.tasks[running.id].state == states.SUCCESS
    assert state.tasks[running.id].result == "'done'"
    assert state.tasks[failed.id].state == states.FAILURE
    assert state.tasks[failed.id].exception == "KeyError('nope')"
    assert state.alive_workers() == []
    assert state.counts() == {states.SUCCESS: 1, states.FAILURE: 1}
    assert state.workers["st@test"].processed == 2


def test_a_bad_event_is_logged_and_the_receiver_keeps_going(app, caplog):
    from kombu import Producer

    from nbqueue.events import event_exchange

    with EventLog(app) as log, app.connection() as conn:
        producer = Producer(conn.default_channel, exchange=event_exchange(conn))
        producer.publish(["not an event"], routing_key="task.multi", serializer="json")
        producer.publish({"no": "type"}, routing_key="worker.heartbeat", serializer="json")
        producer.publish(
            {"type": "worker-online", "hostname": "x@y", "timestamp": time.time(), "freq": 1.0},
            routing_key="worker.online",
            serializer="json",
        )
        log.wait_type("worker-online", hostname="x@y")
    assert "malformed event" in caplog.text
    assert [e["hostname"] for e in log.events] == ["x@y"]


def test_a_receiver_can_be_stopped_and_started_again(app):
    seen = []
    receiver = app.events.Receiver(handlers={"worker-online": seen.append})
    with app.worker(hostname="one@test"):
        pass
    for name in ("two@test", "three@test"):
        receiver.start(wakeup=False)
        try:
            with app.worker(hostname=name):
                wait_for(lambda name=name: any(e["hostname"] == name for e in seen))
        finally:
            receiver.stop()
    assert [e["hostname"] for e in seen] == ["two@test", "three@test"]


def test_worker_offline_is_the_last_event_a_stopping_worker_sends(app):
    # a task event still buffered at stop must not follow worker-offline: a monitor
    # counts task events as heartbeats and would see the stopped worker alive again
    @app.task(name="t.noop")
    def noop():
        return None

    with EventLog(app) as log:
        with app.worker(hostname="last@test", send_events=True) as worker:
            worker.steps["events"].flush_interval = 60  # buffered until something flushes
            noop.delay().get(timeout=10)
        log.wait_type("task-succeeded", hostname="last@test")
        log.wait_type("worker-offline", hostname="last@test")
    types = [e["type"] for e in log.events if e["hostname"] == "last@test"]
    assert types[-1] == "worker-offline", types
    assert not log.state.alive_workers()


def test_unheard_task_events_are_not_even_built_on_the_in_process_broker(app):
    reprs = []

    class Loud:
        def __repr__(self):
            reprs.append(1)  # the task-succeeded event's result field is built with repr
            return "Loud()"

    @app.task(ignore_result=True)
    def loud():
        return Loud()

    with app.worker(hostname="quiet@test", send_events=True) as worker:
        loud.delay()
        assert worker.drain(10)
        assert reprs == []  # nobody was bound to the event exchange: nothing built
        dispatcher = worker.steps["events"].dispatcher
        assert dispatcher.info()["unrouted"] >= 3  # received, started, succeeded unheard
        with EventLog(app) as log:
            heard = loud.delay()
            (event,) = log.wait_type("task-succeeded", hostname="quiet@test")
        assert event["uuid"] == heard.id and event["result"] == "Loud()"
        assert reprs == [1]
