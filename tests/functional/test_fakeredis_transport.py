"""What is particular to ``fakeredis://``: named servers, Redis's own keys, no polling."""

from __future__ import annotations

import json
import threading
from contextlib import suppress

import fakeredis
import pytest
from kombu import Connection, Consumer, Producer, Queue

import nbqueue
from nbqueue.transports import fakeredis as fake_transport


def _publish(conn: Connection, body: object, queue: str = "q", priority: int = 0) -> None:
    Producer(conn.default_channel).publish(
        body, routing_key=queue, priority=priority, declare=[Queue(queue)]
    )


def _client(url: str) -> fakeredis.FakeRedis:
    server, db = fake_transport.server_for_url(url)
    return fakeredis.FakeRedis(server=server, db=db)


def test_servers_are_found_by_name_and_databases_are_apart() -> None:
    with Connection("fakeredis://iso-a/0") as a, Connection("fakeredis://iso-a/0") as same:
        assert a.transport.server is same.transport.server
    with Connection("fakeredis://iso-a/1") as other_db, Connection("fakeredis://iso-b/0") as b:
        _publish(other_db, "db 1")
        _publish(b, "server b")
        assert _client("fakeredis://iso-a/0").llen("q") == 0
        assert _client("fakeredis://iso-a/1").llen("q") == 1
        assert _client("fakeredis://iso-b/0").llen("q") == 1


def test_the_keys_are_kombus_redis_keys() -> None:
    url = "fakeredis://keys/0"
    raw = _client(url)
    with Connection(url) as conn:
        _publish(conn, {"n": 1}, priority=5)
        (envelope,) = raw.lrange("q\x06\x163", 0, -1)  # priority 5 -> the step-3 bucket
        message = json.loads(envelope)
        assert set(message) == {"body", "content-encoding", "content-type", "headers", "properties"}
        assert message["properties"]["body_encoding"] == "base64"
        assert message["properties"]["delivery_info"] == {"exchange": "", "routing_key": "q"}
        channel = conn.channel()
        got = []
        Consumer(channel, [Queue("q")], on_message=got.append).consume()
        conn.drain_events(timeout=5)
        tag = got[0].delivery_tag
        assert raw.hexists("unacked", tag)
        assert raw.zscore("unacked_index", tag) is not None
        got[0].ack()
        assert not raw.hexists("unacked", tag)
        channel.close()


def test_an_idle_consumer_sleeps_instead_of_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    with Connection("fakeredis://idle/0") as conn:
        channel = conn.channel()
        Consumer(channel, [Queue("q")], on_message=lambda m: m.ack()).consume()
        looks = []
        original = conn.transport._deliver_one
        monkeypatch.setattr(conn.transport, "_deliver_one", lambda: looks.append(1) or original())
        with suppress(TimeoutError):
            conn.drain_events(timeout=0.5)
        assert len(looks) <= 3, f"looked {len(looks)} times in 0.5 s: polling"
        channel.close()


def test_a_write_by_any_client_wakes_the_consumer() -> None:
    url = "fakeredis://wake/0"
    with Connection(url) as conn:
        got = []
        channel = conn.channel()
        Consumer(
            channel, [Queue("q")], on_message=lambda m: (got.append(m.payload), m.ack())
        ).consume()
        done = threading.Event()

        def consume() -> None:
            with suppress(TimeoutError):
                conn.drain_events(timeout=30)
            done.set()

        thread = threading.Thread(target=consume)
        thread.start()
        envelope = {
            "body": json.dumps("raw"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {
                "delivery_info": {"exchange": "", "routing_key": "q"},
                "delivery_tag": "t-1",
                "priority": 0,
            },
        }
        _client(url).lpush("q", json.dumps(envelope))  # not through kombu at all
        assert done.wait(10)
        thread.join(10)
        assert got == ["raw"]
        channel.close()


def test_a_bare_fakeredis_url_is_the_apps_own_server_for_broker_and_backend() -> None:
    one = nbqueue.App("one", broker="fakeredis://", backend="fakeredis://")
    two = nbqueue.App("two", broker="fakeredis://", backend="fakeredis://")
    try:
        assert one.broker.fake_server is one.backend._pool.connection_kwargs["server"]
        assert one.broker.fake_server is not two.broker.fake_server

        @one.task
        def hello() -> str:
            return "hi"

        hello.delay()
        assert fakeredis.FakeRedis(server=one.broker.fake_server).llen("celery") == 1
        assert fakeredis.FakeRedis(server=two.broker.fake_server).llen("celery") == 0
    finally:
        one.close()
        two.close()


def test_a_consumer_without_acks_leaves_nothing_unacked() -> None:
    url = "fakeredis://noack/0"
    raw = _client(url)
    with Connection(url) as conn:
        for i in range(5):
            _publish(conn, i)
        got: list[object] = []
        channel = conn.channel()
        Consumer(channel, [Queue("q")], on_message=got.append, no_ack=True).consume()
        while len(got) < 5:
            conn.drain_events(timeout=5)
        assert [m.payload for m in got] == [0, 1, 2, 3, 4]
        assert raw.hlen("unacked") == 0 and raw.zcard("unacked_index") == 0
        channel.close()
