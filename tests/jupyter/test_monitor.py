"""The monitor: hand-made Celery events folded into tables; the live view over a feed."""

from __future__ import annotations

import pytest

from nbqueue.jupyter.feeds import combined, receiver_feed
from nbqueue.jupyter.monitor import MonitorModel, MonitorView
from tests.helpers import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_workers_are_alive_from_heartbeats_and_offline_after_them() -> None:
    clock = Clock()
    model = MonitorModel(clock=clock)
    model.on_event({"type": "worker-online", "hostname": "w1@h", "freq": 2.0, "active": 0})
    model.on_event({"type": "worker-heartbeat", "hostname": "w2@h", "freq": 5.0, "processed": 7})
    clock.now += 3.9
    workers = {w.hostname: (w, alive) for w, alive in model.snapshot()[0]}
    assert workers["w1@h"][1] and workers["w2@h"][1]
    assert workers["w2@h"][0].processed == 7
    clock.now += 0.2  # w1: no heartbeat for more than twice its interval
    workers = {w.hostname: alive for w, alive in model.snapshot()[0]}
    assert workers == {"w1@h": False, "w2@h": True}
    model.on_event({"type": "worker-heartbeat", "hostname": "w1@h", "freq": 2.0})
    assert dict((w.hostname, a) for w, a in model.snapshot()[0])["w1@h"]
    model.on_event({"type": "worker-offline", "hostname": "w2@h"})
    assert dict((w.hostname, a) for w, a in model.snapshot()[0])["w2@h"] is False


def test_tasks_roll_newest_first_and_a_batch_is_many_events() -> None:
    model = MonitorModel(max_tasks=3)
    for i in range(5):
        model.on_event({"type": "task-received", "uuid": f"t{i}", "name": "add", "hostname": "w"})
    model.on_event(
        [
            {"type": "task-started", "uuid": "t4", "hostname": "w"},
            {"type": "task-succeeded", "uuid": "t4", "result": "5", "hostname": "w"},
            {"type": "task-started", "uuid": "t3", "hostname": "w"},
        ]
    )
    model.on_event({"type": "task-started", "uuid": "t4", "hostname": "w"})  # late, ignored
    tasks = model.snapshot()[1]
    assert [(t.uuid, t.state) for t in tasks] == [
        ("t4", "SUCCESS"),
        ("t3", "STARTED"),
        ("t2", "RECEIVED"),
    ]
    assert tasks[0].info == "5" and tasks[0].name == "add"
    model.on_event({"type": "worker-elect", "hostname": "w"})  # unknown kinds are counted only
    assert model.events_seen == 10


def test_view_draws_queues_workers_and_tasks_from_a_feed(app) -> None:
    handlers = []

    def feed(handler):
        handlers.append(handler)
        return lambda: handlers.remove(handler)

    @app.task(name="add")
    def add(x, y):
        return x + y

    add.delay(1, 2)
    view = MonitorView(app, feed=feed, tick=None)
    try:
        assert handlers, "subscribed"
        wait_for(lambda: "<td>celery</td><td>1</td>" in view.queues.value, message="depth")
        handlers[0]({"type": "worker-online", "hostname": "far@away", "freq": 2.0})
        handlers[0]({"type": "task-failed", "uuid": "abc", "hostname": "far@away"})
        wait_for(lambda: "far@away" in view.workers.value, message="the worker row")
        wait_for(lambda: "FAILURE" in view.tasks.value, message="the task row")
        assert "1/1 workers alive, 1 tasks" in repr(view)
        assert "<table" in view._repr_html_()
    finally:
        view.close()
    assert not handlers, "unsubscribed on close"


def test_in_process_workers_are_seen_directly_and_ticks_stop(app) -> None:
    view = MonitorView(app, tick=0.05)
    try:
        with app.worker(concurrency=1, hostname="local@here"):
            wait_for(lambda: "local@here</td><td>alive" in view.workers.value, message="alive")
        wait_for(lambda: "local@here</td><td>offline" in view.workers.value, message="offline")
    finally:
        view.close()


def test_feeds_combine_and_unsubscribe_in_reverse() -> None:
    calls: list[str] = []

    def feed(name):
        def subscribe(handler):
            handler({"type": f"worker-online-{name}"})
            return lambda: calls.append(f"off {name}")

        return subscribe

    seen: list[str] = []
    unsubscribe = combined(feed("a"), feed("b"))(lambda e: seen.append(e["type"]))
    unsubscribe()
    assert seen == ["worker-online-a", "worker-online-b"]
    assert calls == ["off b", "off a"]


def test_the_monitor_follows_broker_events_of_any_worker(app) -> None:
    pytest.importorskip("nbqueue.events", reason="the events receiver (branch cluster)")

    @app.task(name="add")
    def add(x, y):
        return x + y

    view = MonitorView(app, feed=receiver_feed(app), tick=None)  # broker events only
    try:
        with app.worker(concurrency=1, hostname="remote@far", send_events=True):
            add.delay(1, 2).get(timeout=30)
            wait_for(lambda: "remote@far</td><td>alive" in view.workers.value, timeout=30)
            wait_for(lambda: "SUCCESS" in view.tasks.value, timeout=30, message="task event")
    finally:
        view.close()
