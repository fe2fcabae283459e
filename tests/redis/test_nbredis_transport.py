"""nbqueue's ``redis://`` transport on a real server: kombu's keys, fewer round trips."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue

from nbqueue.messaging import resolve_broker_url


@pytest.fixture
def url(redis_url: str) -> str:
    return resolve_broker_url(redis_url, "unused")  # nbredis://


def _publish(conn: Connection, body: Any, priority: int = 0, queue: str = "q") -> None:
    Producer(conn.default_channel).publish(
        body, routing_key=queue, priority=priority, declare=[Queue(queue)]
    )


def _consumer(conn: Connection, prefetch: int, got: list[Any]) -> Any:
    channel = conn.channel()
    channel.basic_qos(0, prefetch, False)
    Consumer(channel, [Queue("q")], on_message=got.append).consume()
    return channel


def test_waiting_messages_come_in_one_step_recorded_as_kombu_records_them(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        for i, priority in enumerate([9, 0, 5, 0, 3, 9, 0, 6, 2, 1]):
            _publish(conn, {"i": i, "p": priority}, priority=priority)
        got: list[Any] = []
        channel = _consumer(conn, 10, got)
        conn.drain_events(timeout=5)  # one BRPOP, then the rest fetched in one script
        assert len(got) == 10
        assert [m.payload["p"] for m in got] == [0, 0, 0, 2, 1, 5, 3, 6, 9, 9]
        records = {k.decode(): json.loads(v) for k, v in redis_client.hgetall("unacked").items()}
        assert set(records) == {m.delivery_tag for m in got}
        for message in got:
            envelope, exchange, routing_key = records[message.delivery_tag]
            assert envelope["properties"]["delivery_tag"] == message.delivery_tag
            assert envelope["body"] == message._raw["body"]
            assert (exchange, routing_key) == ("", "q")
        assert redis_client.zcard("unacked_index") == 10
        for message in got:
            message.ack()
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
        channel.close()


def test_a_brpop_delivery_is_recorded_as_kombu_records_it(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        got: list[Any] = []
        channel = _consumer(conn, 10, got)
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)  # leaves a BRPOP on the wire
        assert channel._in_poll
        _publish(conn, {"text": "é"})
        conn.drain_events(timeout=5)  # BRPOP's reply, recorded with what else is waiting
        [message] = got
        stored = json.loads(redis_client.hget("unacked", message.delivery_tag))
        assert stored == json.loads(json.dumps([message._raw, "", "q"]))  # kombu's record
        message.ack()
        assert redis_client.hlen("unacked") == 0
        channel.close()


def test_a_message_the_fetch_cannot_read_stays_where_it_was(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        _publish(conn, "first")
        redis_client.lpush("q", b"not json at all")
        _publish(conn, "third")
        got: list[Any] = []
        channel = _consumer(conn, 10, got)
        conn.drain_events(timeout=5)
        assert [m.payload for m in got] == ["first"]
        waiting = redis_client.lrange("q", 0, -1)  # the right end is served next
        assert waiting[-1] == b"not json at all" and len(waiting) == 2
        got[0].ack()
        channel.close()


def test_an_ack_wakes_a_consumer_held_back_by_its_prefetch_limit(url: str) -> None:
    with Connection(url) as conn:
        _publish(conn, "one")
        _publish(conn, "two")
        got: list[Any] = []
        channel = _consumer(conn, 1, got)
        conn.drain_events(timeout=5)
        assert [m.payload for m in got] == ["one"]
        done = threading.Event()

        def drain() -> None:
            deadline = time.monotonic() + 20
            while len(got) < 2 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=20)  # the poll itself would wait 20 s
                except TimeoutError:
                    continue
            done.set()

        thread = threading.Thread(target=drain)
        thread.start()
        started = time.monotonic()
        got[0].ack()
        assert done.wait(20)
        thread.join(5)
        assert [m.payload for m in got] == ["one", "two"]
        assert time.monotonic() - started < 5
        got[1].ack()
        channel.close()


def _starved(conn: Connection, got: list[Any]) -> Any:
    """Six messages waiting, a consumer with a window of four that took the first four:
    it waits at its prefetch limit. Returns its channel."""
    for i in range(6):
        _publish(conn, i)
    channel = _consumer(conn, 4, got)
    conn.drain_events(timeout=5)
    assert [m.payload for m in got] == [0, 1, 2, 3]
    with pytest.raises(TimeoutError):  # the window is full: nothing to poll for
        conn.drain_events(timeout=0.05)
    assert conn.transport.starved
    return channel


def test_a_starved_consumer_is_woken_once_half_its_window_is_free(url: str) -> None:
    with Connection(url) as conn:
        got: list[Any] = []
        channel = _starved(conn, got)
        transport = conn.transport
        got[0].ack()
        assert not transport._woken  # one free place: a fetch would bring one message
        got[1].ack()
        assert transport._woken  # half the window: wake, and fetch both in one step
        with pytest.raises(TimeoutError):  # the wakeup ends the first drain at once
            conn.drain_events(timeout=5)
        conn.drain_events(timeout=5)
        assert [m.payload for m in got] == [0, 1, 2, 3, 4, 5]
        for message in got[2:]:
            message.ack()
        channel.close()


def test_acks_made_at_the_prefetch_limit_ride_on_the_next_fetch(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        got: list[Any] = []
        channel = _starved(conn, got)
        got[0].ack()
        got[1].ack()
        assert list(channel.acked) == [got[0].delivery_tag, got[1].delivery_tag]
        assert redis_client.hlen("unacked") == 4  # not forgotten yet: no round trip of their own
        with pytest.raises(TimeoutError):  # woken by the second ack
            conn.drain_events(timeout=5)
        conn.drain_events(timeout=5)  # forgets both and fetches two, in one script
        assert len(got) == 6 and not channel.acked
        waiting = {k.decode() for k in redis_client.hkeys("unacked")}
        assert waiting == {m.delivery_tag for m in got[2:]}
        assert redis_client.zcard("unacked_index") == 4
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)
        for message in got[2:4]:  # starved again: these wait for a fetch that never comes
            message.ack()
        assert len(channel.acked) == 2
        channel.close()  # ... so closing forgets them; the two unacked go back to the queue
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
        bodies = [json.loads(envelope)["body"] for envelope in redis_client.lrange("q", 0, -1)]
        assert sorted(json.loads(base64.b64decode(body)) for body in bodies) == [4, 5]


def test_after_a_fetch_finds_the_queues_empty_the_consumer_waits_in_brpop_at_once(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        got: list[Any] = []
        channel = _consumer(conn, 4, got)
        fetches = []
        run_script = channel.run_script

        def counted(name: str, *args: Any, **kwargs: Any) -> Any:
            fetches.append(name == "fetch")
            return run_script(name, *args, **kwargs)

        channel.run_script = counted
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)  # one fetch (nothing), then BRPOP
        assert fetches == [True] and channel.emptied
        for round_ in range(3):
            _publish(conn, round_)
            conn.drain_events(timeout=5)  # BRPOP's message, recorded by one fetch
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.05)  # BRPOP again, no fetch before it
        assert [m.payload for m in got] == [0, 1, 2]
        assert fetches == [True] * 4
        assert redis_client.hlen("unacked") == 3
        for message in got:
            message.ack()
        channel.close()


def test_an_ack_made_while_waiting_in_brpop_rides_on_the_next_delivery(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        _publish(conn, "first")
        got: list[Any] = []
        channel = _consumer(conn, 4, got)
        conn.drain_events(timeout=5)
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)  # the queue is empty: a BRPOP is outstanding
        assert channel._in_poll
        got[0].ack()
        assert list(channel.acked) == [got[0].delivery_tag]
        assert redis_client.hlen("unacked") == 1  # not yet: no round trip of its own
        _publish(conn, "second")
        conn.drain_events(timeout=5)  # BRPOP delivers; one script records it, forgets the ack
        assert [m.payload for m in got] == ["first", "second"] and not channel.acked
        assert {k.decode() for k in redis_client.hkeys("unacked")} == {got[1].delivery_tag}
        got[1].ack()
        with pytest.raises(TimeoutError):  # nothing comes: forgotten within the poll
            conn.drain_events(timeout=0.05)
        assert not channel.acked and redis_client.hlen("unacked") == 0
        assert redis_client.zcard("unacked_index") == 0
        channel.close()


def test_closing_with_a_brpop_outstanding_does_not_wait_for_it(url: str) -> None:
    with Connection(url) as conn:
        got: list[Any] = []
        channel = _consumer(conn, 1, got)
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)  # leaves a BRPOP (1 s timeout) on the wire
        assert channel._in_poll
        started = time.monotonic()
        channel.close()
        assert time.monotonic() - started < 0.5


def test_with_a_global_key_prefix_kombus_own_acks_are_used(
    redis_url: str, redis_client: redis.Redis
):
    url = resolve_broker_url(redis_url, "unused")
    with Connection(url, transport_options={"global_keyprefix": "team:"}) as conn:
        _publish(conn, "prefixed")
        got: list[Any] = []
        channel = _consumer(conn, 5, got)
        conn.drain_events(timeout=5)
        assert redis_client.hexists("team:unacked", got[0].delivery_tag)
        got[0].ack()
        assert not redis_client.exists("team:unacked")
        channel.close()


def test_a_consumer_without_acks_leaves_nothing_unacked(
    url: str, redis_client: redis.Redis
) -> None:
    with Connection(url) as conn:
        for i in range(5):
            _publish(conn, i)
        got: list[Any] = []
        channel = conn.channel()
        Consumer(channel, [Queue("q")], on_message=got.append, no_ack=True).consume()
        while len(got) < 5:
            conn.drain_events(timeout=5)
        assert [m.payload for m in got] == [0, 1, 2, 3, 4]
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
        channel.close()


def test_a_dead_sweepers_restore_lock_lapses_in_30_s_not_kombus_5_minutes(
    url: str, redis_client: redis.Redis
) -> None:
    from kombu.transport.redis import Mutex

    with Connection(url, transport_options={"unacked_mutex_expire": 5}) as other:
        assert other.default_channel.unacked_mutex_expire == 5  # still a transport option
    with Connection(url) as conn:
        qos = conn.default_channel.qos
        assert qos.unacked_mutex_expire == 30
        # the lock as the sweep takes it, held as by a sweeper killed inside its sweep
        with Mutex(conn.default_channel.client, qos.unacked_mutex_key, qos.unacked_mutex_expire):
            assert 0 < redis_client.ttl(qos.unacked_mutex_key) <= 30
