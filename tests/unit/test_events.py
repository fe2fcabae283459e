"""Events without a worker: building, reading back, and the cluster State, on real captures."""

from __future__ import annotations

import copy
import threading
import time

import pytest
from kombu import Connection
from kombu.clocks import LamportClock

from nbqueue import states
from nbqueue.events import (
    EventDispatcher,
    State,
    event_exchange,
    event_from_message,
    group_from,
    load_average,
    utcoffset,
)
from nbqueue.events.event import adjust_timestamp, routing_key_for
from tests import captures

GOLDEN = captures.load("celery_events.json")
CELERY_EVENTS = GOLDEN["celery_events_by_type"]


def test_utcoffset_is_hours_west_of_utc():
    assert utcoffset() == -time.localtime().tm_gmtoff / 3600


def test_adjust_timestamp_moves_a_remote_timestamp_onto_our_clock():
    here = utcoffset()
    assert adjust_timestamp(1000.0, here) == 1000.0
    # a sender two hours further west stamped its clock 2 h behind ours
    assert adjust_timestamp(1000.0, here + 2) == 1000.0 - 7200


def test_names_and_routing_keys():
    assert group_from("task-sent") == "task"
    assert routing_key_for("worker-elect-ack") == "worker.elect.ack"
    assert routing_key_for("task-succeeded") == "task.succeeded"


def test_dispatched_events_put_fields_in_celerys_order(app):
    captured = CELERY_EVENTS["task-succeeded"]
    sent = []
    dispatcher = EventDispatcher(app, hostname="w@h", buffer_group={"task"})
    dispatcher.on_buffered = lambda size: sent.extend(dispatcher._buffer)
    dispatcher.send("task-succeeded", uuid=captured["uuid"], result="5", runtime=0.01)
    (event,) = sent
    assert list(event) == list(captured)
    assert event["type"] == "task-succeeded" and event["clock"] == app.clock.value
    dispatcher.close()


def test_the_events_exchange_is_topic_except_where_topics_are_emulated():
    assert event_exchange(Connection("nbmemory://unit-ex")).type == "topic"
    assert event_exchange(Connection("redis://127.0.0.1:1/0")).type == "fanout"
    named = event_exchange(Connection("nbmemory://unit-ex"), "myev")
    assert (named.name, named.durable) == ("myev", True)


def test_load_average_is_rounded_up_to_two_decimals():
    loads = load_average()
    assert len(loads) == 3
    assert all(round(x, 2) == x and x >= 0 for x in loads)


def test_event_from_message_syncs_the_clock_and_stamps_receipt():
    clock = LamportClock()
    event = copy.deepcopy(CELERY_EVENTS["task-received"])
    type_, out = event_from_message(event, clock, now=lambda: 42.0)
    assert type_ == "task-received"
    assert clock.value == CELERY_EVENTS["task-received"]["clock"] + 1
    assert out["local_received"] == 42.0
    sent = copy.deepcopy(CELERY_EVENTS["task-sent"])
    _, out = event_from_message(sent, clock)
    assert out["clock"] == CELERY_EVENTS["task-received"]["clock"]  # ours - 1: clients never sync
    unstamped = {"type": "worker-online", "hostname": "x"}
    before = clock.value
    _, out = event_from_message(unstamped, clock, localize=False)
    assert out["clock"] == before + 1


# the cluster State ----------------------------------------------------------------------


def _received(event: dict, at: float) -> dict:
    event = copy.deepcopy(event)
    event["local_received"] = at
    return event


def test_state_understands_the_hand_made_events_celery_understood():
    """The events Celery 5.7's State accepted (foreign_events_understood.json), fed to ours."""
    understood = captures.load("foreign_events_understood.json")
    state = State()
    for body in GOLDEN["hand_made_events_db12"]:
        for event in body if isinstance(body, list) else [body]:
            state.event(_received(event, event["timestamp"]))
    expected = understood["task"]
    task = state.tasks[expected["uuid"]]
    for field in ("name", "state", "args", "kwargs", "result", "runtime", "retries", "root_id"):
        assert getattr(task, field) == expected[field], field
    # the custom task-progress came after SUCCESS: precedence keeps SUCCESS
    assert task.state == states.SUCCESS
    worker = state.workers[understood["worker"]["hostname"]]
    assert worker.processed == understood["worker"]["processed"]
    assert not worker.alive  # worker-offline came last
    assert state.alive_workers() == understood["alive_after_offline"] == []


def test_a_worker_is_alive_for_twice_its_heartbeat_interval():
    state = State()
    beat = dict(CELERY_EVENTS["worker-heartbeat"], freq=2.0)
    state.event(_received(beat, 1000.0))
    (worker,) = state.workers.values()
    assert worker.is_alive(now=1003.9) and not worker.is_alive(now=1004.0)
    assert [w.hostname for w in state.alive_workers(now=1001)] == [beat["hostname"]]
    assert state.alive_workers(now=1005) == []
    offline = dict(CELERY_EVENTS["worker-offline"])
    state.event(_received(offline, 1001.0))
    assert not worker.is_alive(now=1001.5)


def test_out_of_order_task_events_never_move_a_task_backwards():
    state = State()
    received, started, succeeded = (
        CELERY_EVENTS["task-received"],
        CELERY_EVENTS["task-started"],
        CELERY_EVENTS["task-succeeded"],
    )
    uuid = "6e1f0000-0000-4000-8000-000000000001"
    for event in (succeeded, started, received):  # reversed
        state.event(_received(dict(event, uuid=uuid), event["timestamp"]))
    task = state.tasks[uuid]
    assert task.state == states.SUCCESS
    assert task.name == received["name"] and task.args == received["args"]  # RECEIVED keeps
    assert task.result == succeeded["result"]
    assert task.started == started["timestamp"]


def test_state_calls_join_and_leave_hooks_and_counts_tasks():
    joined, left = [], []
    state = State(on_node_join=joined.append, on_node_leave=left.append)
    state.event(_received(CELERY_EVENTS["worker-online"], time.time()))
    state.event(_received(CELERY_EVENTS["worker-offline"], time.time()))
    assert [w.hostname for w in joined] == [CELERY_EVENTS["worker-online"]["hostname"]]
    assert [w.hostname for w in left] == [CELERY_EVENTS["worker-offline"]["hostname"]]
    state.event(_received(CELERY_EVENTS["task-received"], time.time()))
    assert state.task_count == 1 and state.counts() == {states.RECEIVED: 1}
    assert state.task_types() == [CELERY_EVENTS["task-received"]["name"]]


def test_state_forgets_the_oldest_tasks_beyond_its_limit():
    state = State(max_tasks_in_memory=3)
    for i in range(5):
        state.event(_received(dict(CELERY_EVENTS["task-started"], uuid=f"id-{i}"), time.time()))
    assert list(state.tasks) == ["id-2", "id-3", "id-4"]


def test_a_failing_state_callback_is_logged_not_raised(caplog):
    def boom(state, event):
        raise RuntimeError("callback broke")

    state = State(callback=boom)
    state.event(_received(CELERY_EVENTS["worker-online"], time.time()))
    assert "callback broke" in caplog.text
    assert len(state.workers) == 1


# the dispatcher ---------------------------------------------------------------------------


@pytest.fixture
def bound(app):
    """A queue bound to every event of `app`'s broker, read back as raw kombu messages."""
    from kombu import Queue

    conn = app.connection()
    queue = Queue("unit-events", event_exchange(conn), routing_key="#")(conn.default_channel)
    queue.declare()

    def read() -> list:
        out = []
        while (message := queue.get(no_ack=True)) is not None:
            out.append(message)
        return out

    yield read
    queue.delete()
    conn.release()


def test_dispatcher_buffers_task_events_into_task_multi_lists(app, bound):
    flushes = []
    with EventDispatcher(
        app, hostname="d@h", buffer_group={"task"}, buffer_limit=4, on_buffered=flushes.append
    ) as dispatcher:
        for i in range(6):
            dispatcher.send("task-started", uuid=f"id-{i}")
        assert bound() == []  # buffered until flushed
        dispatcher.send("worker-heartbeat", freq=2.0)
        dispatcher.flush()
        messages = bound()
    assert flushes == [1, 2, 3, 4, 5, 6]  # the owner decides when to flush
    keys = [m.delivery_info["routing_key"] for m in messages]
    assert keys == ["worker.heartbeat", "task.multi", "task.multi"]
    assert [len(m.decode()) for m in messages[1:]] == [4, 2]  # at most buffer_limit each
    assert messages[0].headers == {"hostname": "d@h"}
    assert messages[0].properties["delivery_mode"] == 1
    assert [e["uuid"] for m in messages[1:] for e in m.decode()] == [f"id-{i}" for i in range(6)]


def test_a_full_only_flush_sends_whole_batches_and_leaves_the_rest(app, bound):
    with EventDispatcher(app, hostname="d@h", buffer_group={"task"}, buffer_limit=4) as dispatcher:
        for i in range(10):
            dispatcher.send("task-started", uuid=f"id-{i}")
        dispatcher.flush(full_only=True)
        assert [len(m.decode()) for m in bound()] == [4, 4]
        assert dispatcher.buffered == 2
        dispatcher.flush()
        assert [e["uuid"] for m in bound() for e in m.decode()] == ["id-8", "id-9"]
        assert dispatcher.buffered == 0


def test_threads_flushing_at_once_send_whole_batches(app, bound):
    dispatcher = EventDispatcher(app, hostname="d@h", buffer_group={"task"}, buffer_limit=8)
    dispatcher.on_buffered = lambda size: size >= 8 and dispatcher.flush(full_only=True)
    start = threading.Barrier(4)

    def send(n: int) -> None:
        start.wait(10)
        for i in range(200):
            dispatcher.send("task-started", uuid=f"{n}-{i}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    dispatcher.close()  # publishes what is left
    sizes = [len(m.decode()) for m in bound()]
    assert sum(sizes) == 800
    assert all(size == 8 for size in sizes[:-1])  # only the last (at close) may be short


def test_dispatcher_sends_only_its_groups_and_nothing_when_disabled(app, bound):
    dispatcher = EventDispatcher(app, hostname="d@h", groups={"worker"})
    dispatcher.send("task-started", uuid="x")
    dispatcher.send("worker-heartbeat")
    dispatcher.enabled = False
    dispatcher.send("worker-heartbeat")
    dispatcher.close()
    assert [m.delivery_info["routing_key"] for m in bound()] == ["worker.heartbeat"]


def test_unroutable_events_are_counted_not_encoded(app):
    dispatcher = EventDispatcher(app, hostname="d@h")
    dispatcher.send("worker-heartbeat")
    dispatcher.close()
    assert dispatcher.info()["unrouted"] == 1 and dispatcher.info()["sent"] == 0


def test_a_closed_dispatcher_drops_and_counts(app, bound):
    dispatcher = EventDispatcher(app, hostname="d@h", buffer_group={"task"})
    dispatcher.send("task-started", uuid="before-close")
    dispatcher.close()  # flushes first
    dispatcher.send("worker-heartbeat")
    assert [e["uuid"] for m in bound() for e in m.decode()] == ["before-close"]
    assert dispatcher.info()["dropped"] == 1


def test_a_broker_failure_is_logged_and_counted_never_raised(app, caplog):
    dispatcher = EventDispatcher(
        app, hostname="d@h", connection=Connection("redis://127.0.0.1:1/0")
    )
    dispatcher.send("worker-heartbeat", freq=2.0)
    assert dispatcher.info()["dropped"] == 1
    assert "could not send event worker.heartbeat" in caplog.text
    dispatcher.close()
