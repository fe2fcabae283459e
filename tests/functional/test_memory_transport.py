"""nbqueue's in-process transport: isolation, priorities, redelivery, no polling delay."""

from __future__ import annotations

import time

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from nbqueue.transports import memory


@pytest.fixture
def conn(request):
    name = f"test-{request.node.name}"
    with Connection(f"nbmemory://{name}") as connection:
        yield connection


def _publish(conn, body, *, queue="q", priority=0):
    Producer(conn.default_channel).publish(
        body, routing_key=queue, priority=priority, declare=[Queue(queue)]
    )


def _drain(conn, queue="q", *, ack=True, limit=100, first_timeout=0.05):
    """Consume what is there (waiting up to `first_timeout` for the first message)."""
    got = []

    def on_message(message):
        got.append(message)
        if ack:
            message.ack()

    channel = conn.channel()
    try:
        with Consumer(channel, [Queue(queue)], on_message=on_message):
            for _ in range(limit):
                try:
                    conn.drain_events(timeout=first_timeout if not got else 0.05)
                except TimeoutError:
                    break
    finally:
        channel.close()
    return got


def test_namespaces_are_isolated():
    with Connection("nbmemory://one") as a, Connection("nbmemory://two") as b:
        _publish(a, "for one")
        assert _drain(b) == []
        assert [m.payload for m in _drain(a)] == ["for one"]


def test_higher_priorities_are_served_first(conn):
    for priority in (0, 9, 5, 2, 7):
        _publish(conn, f"p{priority}", priority=priority)
    assert [m.payload for m in _drain(conn)] == ["p9", "p7", "p5", "p2", "p0"]


def test_unacked_messages_come_back_when_the_channel_closes(conn):
    _publish(conn, "keep me")
    (message,) = _drain(conn, ack=False)
    assert not message.delivery_info.get("redelivered")
    # the consumer's channel was closed by the context manager above: restored
    (again,) = _drain(conn)
    assert again.payload == "keep me"
    assert again.delivery_info["redelivered"] is True
    assert again.headers["redelivered"] is True


def test_visibility_timeout_restores_messages_of_a_vanished_consumer():
    with Connection("nbmemory://vt", transport_options={"visibility_timeout": 0.2}) as conn:
        _publish(conn, "abandoned")
        channel = conn.channel()
        got = []
        Consumer(channel, [Queue("q")], on_message=got.append).consume()
        conn.drain_events(timeout=1)
        assert got and conn.transport.space.unacked
        # the consumer vanishes without closing (a dead worker): only the timeout helps
        channel._qos._delivered.clear()
        channel._consumers.clear()
        channel._active_queues.clear()
        with Connection("nbmemory://vt", transport_options={"visibility_timeout": 0.2}) as other:
            (again,) = _drain(other, first_timeout=5)  # restored once 0.2 s have passed
        assert again.payload == "abandoned" and again.delivery_info["redelivered"]


def test_auto_delete_queues_go_with_their_last_consumer(conn):
    queue = Queue("events.1", Exchange("ev", type="topic"), "#", auto_delete=True)
    channel = conn.channel()
    consumer = Consumer(channel, [queue], on_message=lambda m: m.ack())
    consumer.consume()
    assert "events.1" in conn.transport.space.queues
    consumer.cancel()
    assert "events.1" not in conn.transport.space.queues


def test_a_waiting_consumer_wakes_at_once(conn):
    import threading

    got = threading.Event()
    channel = conn.channel()
    Consumer(channel, [Queue("q")], on_message=lambda m: (m.ack(), got.set())).consume()

    def later():
        with Connection(conn.as_uri()) as other:
            _publish(other, "now")

    waiter = threading.Thread(target=conn.drain_events, kwargs={"timeout": 5})
    waiter.start()
    started = time.perf_counter()
    later()
    waiter.join(5)
    assert got.is_set()
    assert time.perf_counter() - started < 0.5


def test_hundred_thousand_queued_messages_stay_compact_and_fast(conn):
    import tracemalloc

    space = conn.transport.space
    payload = b'[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
    props = {
        "correlation_id": "x" * 36,
        "reply_to": "",
        "delivery_mode": 2,
        "priority": 0,
        "delivery_info": {"exchange": "", "routing_key": "q"},
        "body_encoding": None,
    }
    headers = {
        "lang": "py",
        "task": "bench.noop",
        "id": "x" * 36,
        "root_id": "x" * 36,
        "argsrepr": "(1, 2)",
        "kwargsrepr": "{}",
        "origin": "gen1@host",
        "retries": 0,
        "timelimit": [None, None],
        "stamps": {},
    }
    envelope = {
        "body": payload,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": props,
    }

    def timed_drain(n):
        started = time.perf_counter()
        for _ in range(n):
            space.queues["q"].pop()
        return (time.perf_counter() - started) / n

    space.put("q", envelope)
    small = timed_drain(1)
    tracemalloc.start()
    for _ in range(100_000):
        space.put("q", dict(envelope, properties=dict(props, delivery_tag=memory.new_id())))
    per_message = tracemalloc.get_traced_memory()[0] / 100_000
    tracemalloc.stop()
    assert per_message < 1024, per_message
    big = timed_drain(1000)
    assert big < max(small, 20e-6) * 10  # O(1) per message, whatever the depth


def test_a_deleted_queue_is_no_longer_routed_to(app):
    """Fanout/topic routes die with their queue; if_empty keeps a queue holding messages."""
    from kombu import Exchange, Producer, Queue

    exchange = Exchange("fan", type="fanout", durable=False)
    with app.connection() as conn:
        channel = conn.default_channel
        queue = Queue("listener", exchange)(channel)
        queue.declare()
        producer = Producer(channel, exchange=exchange)
        producer.publish({"n": 1}, serializer="json")
        channel.queue_delete("listener", if_empty=True)  # holds a message: kept
        assert channel.routes("fan", "") == ["listener"]
        queue.delete()
        assert channel.routes("fan", "") == []
        producer.publish({"n": 2}, serializer="json")
        assert "listener" not in app.broker.space.queues  # not recreated by the publish
        assert conn.transport.bound_queues("fan") == []
