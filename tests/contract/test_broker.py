"""The broker contract: every transport nbqueue ships behaves the same way through kombu.

A few behaviours belong to one kind of transport, and the tests say so where they check them:

* kombu's virtual transports (memory, Redis) restore a vanished consumer's messages after a
  *visibility timeout*, mark them with a ``redelivered`` header and keep their delivery tag.
  RabbitMQ has no visibility timeout: it returns a consumer's unacked messages the moment
  its channel or connection closes (a killed process's TCP connection drops with it).
* py-amqp's transport has no ``wakeup()``: a waiting drain returns on a frame or at its
  timeout, which is why the worker's loop thread drains in short steps.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.contract.conftest import AMQP_KINDS, KINDS, PRIORITY_ORDER, BrokerKind
from tests.helpers import wait_for


def publish(conn: Connection, body: Any, queue: Queue, *, priority: int = 0, **kw: Any) -> None:
    Producer(conn.default_channel).publish(
        body, routing_key=queue.name, priority=priority, declare=[queue], **kw
    )


class Taker:
    """A consumer on its own channel (prefetch 1) that takes messages one at a time."""

    def __init__(self, conn: Connection, queue: Queue) -> None:
        self.conn = conn
        self.channel = conn.channel()
        self.channel.basic_qos(0, 1, False)
        self.got: list[Any] = []
        self.consumer = Consumer(self.channel, [queue], on_message=self.got.append)
        self.consumer.consume()

    def next(self, timeout: float = 10.0) -> Any:
        """The next message, draining in short steps the way the worker's loop does."""
        deadline = time.monotonic() + timeout
        while not self.got and time.monotonic() < deadline:
            with suppress(TimeoutError):
                self.conn.drain_events(timeout=0.1)
        return self.got.pop(0) if self.got else None

    def close(self) -> None:
        self.channel.close()


@contextmanager
def taking(conn: Connection, queue: Queue) -> Iterator[Taker]:
    taker = Taker(conn, queue)
    try:
        yield taker
    finally:
        taker.close()


@contextmanager
def connect(broker: BrokerKind, **options: Any) -> Iterator[Connection]:
    with Connection(broker.url, transport_options=options) as conn:
        yield conn


#: run a test on kombu's virtual transports only (memory, fakeredis, Redis)
virtual_only = pytest.mark.parametrize("broker", KINDS, indirect=True)
#: run a test on RabbitMQ only
amqp_only = pytest.mark.parametrize("broker", AMQP_KINDS, indirect=True)


def test_a_message_keeps_its_body_headers_and_properties(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn:
        publish(conn, {"n": 1}, queue, headers={"x-custom": "hdr"}, correlation_id="abc")
        with taking(conn, queue) as taker:
            message = taker.next()
            assert message.payload == {"n": 1}
            assert message.headers["x-custom"] == "hdr"
            assert message.properties["correlation_id"] == "abc"
            assert message.content_type == "application/json"
            assert message.delivery_info["routing_key"] == queue.name
            assert not message.delivery_info.get("redelivered")
            message.ack()


def test_an_acked_message_is_gone(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn:
        publish(conn, "once", queue)
        with taking(conn, queue) as taker:
            taker.next().ack()
        with taking(conn, queue) as taker:
            assert taker.next(timeout=0.5) is None


def test_reject_drops_and_reject_with_requeue_redelivers(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn:
        publish(conn, "drop", queue)
        publish(conn, "again", queue)
        with taking(conn, queue) as taker:
            taker.next().reject()
            taker.next().reject(requeue=True)
            again = taker.next()
            assert again.payload == "again"
            assert again.delivery_info["redelivered"] is True
            again.ack()
            assert taker.next(timeout=0.5) is None


def test_priorities_are_served_in_the_transports_order(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn:
        for priority in (0, 9, 5, 2, 7):
            publish(conn, priority, queue, priority=priority)
        order = []
        with taking(conn, queue) as taker:
            for _ in range(5):
                message = taker.next()
                order.append(message.payload)
                message.ack()
        assert order == PRIORITY_ORDER[broker.name]


def test_unacked_messages_come_back_marked_redelivered_when_the_channel_closes(
    broker: BrokerKind,
) -> None:
    queue = broker.queue()
    with connect(broker) as conn:
        publish(conn, "keep me", queue)
        with taking(conn, queue) as taker:
            first = taker.next()
            assert first.payload == "keep me"
        with taking(conn, queue) as taker:
            again = taker.next()
            assert again.payload == "keep me"
            assert again.delivery_info["redelivered"] is True
            if broker.virtual:  # RabbitMQ numbers deliveries per channel and sets no header
                assert again.headers["redelivered"] is True
                assert again.delivery_tag == first.delivery_tag
            again.ack()


@virtual_only  # RabbitMQ has no visibility timeout (see the next test)
def test_a_vanished_consumers_message_is_restored_after_the_visibility_timeout(
    broker: BrokerKind,
) -> None:
    queue = broker.queue()
    options = broker.visibility_options(0.5)
    with connect(broker, **options) as dead, connect(broker, **options) as alive:
        publish(dead, "abandoned", queue)
        vanished = Taker(dead, queue)  # takes the message and never acks nor closes (dead)
        assert vanished.next().payload == "abandoned"
        with taking(alive, queue) as taker:
            again = taker.next(timeout=15)
            assert again is not None, "not restored after the visibility timeout"
            assert again.payload == "abandoned"
            assert again.delivery_info["redelivered"] is True
            again.ack()
        vanished.close()  # its restore finds the message already handed over: no duplicate
        with taking(alive, queue) as taker:
            assert taker.next(timeout=0.5) is None


@amqp_only  # virtual transports wait for the visibility timeout (above)
def test_a_dropped_connections_unacked_message_goes_to_another_consumer_at_once(
    broker: BrokerKind,
) -> None:
    queue = broker.queue()
    with connect(broker) as dead, connect(broker) as alive:
        publish(dead, "abandoned", queue)
        vanished = Taker(dead, queue)
        assert vanished.next().payload == "abandoned"
        # what SIGKILL does to a worker: the socket goes, no AMQP close handshake
        dead.connection.sock.shutdown(socket.SHUT_RDWR)
        with taking(alive, queue) as taker:
            again = taker.next(timeout=15)
            assert again is not None, "not returned when the connection dropped"
            assert again.payload == "abandoned"
            assert again.delivery_info["redelivered"] is True
            again.ack()
            assert taker.next(timeout=0.5) is None
        with suppress(*dead.connection_errors, OSError):
            dead.release()


def test_purge_empties_a_queue_and_counts(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn:
        for priority in (0, 5, 9):
            publish(conn, priority, queue, priority=priority)
        bound = queue(conn.default_channel)
        wait_for(lambda: bound.queue_declare(passive=True).message_count == 3, timeout=10)
        assert bound.purge() == 3
        assert bound.queue_declare().message_count == 0  # (an empty list is no key on Redis)
        with taking(conn, queue) as taker:
            assert taker.next(timeout=0.3) is None


def test_a_waiting_consumer_gets_a_new_message_at_once(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn, connect(broker) as sender, taking(conn, queue) as taker:
        arrived = threading.Event()
        waited: list[float] = []

        def consume() -> None:
            start = time.monotonic()
            try:
                conn.drain_events(timeout=30)
            except TimeoutError:
                return
            waited.append(time.monotonic() - start)
            arrived.set()

        thread = threading.Thread(target=consume)
        thread.start()
        publish(sender, "now", queue)
        assert arrived.wait(10)
        thread.join(10)
        assert waited[0] < 5, "delivered only after a long poll"
        taker.got.pop().ack()


@virtual_only  # py-amqp's transport has no wakeup(); the worker drains in steps
def test_wakeup_interrupts_a_waiting_drain(broker: BrokerKind) -> None:
    queue = broker.queue()
    with connect(broker) as conn, taking(conn, queue):
        returned = threading.Event()

        def drain() -> None:
            try:
                conn.drain_events(timeout=30)
            except TimeoutError:
                returned.set()

        thread = threading.Thread(target=drain)
        start = time.monotonic()
        thread.start()
        wait_for(lambda: conn.transport.wakeup() or returned.is_set(), timeout=10)
        thread.join(10)
        assert time.monotonic() - start < 10


def test_fanout_reaches_every_bound_consumer(broker: BrokerKind) -> None:
    exchange = Exchange(broker.unique("fan"), type="fanout", durable=False)
    queues = [broker.queue(f"fan-{i}", exchange, auto_delete=True) for i in range(2)]
    with connect(broker) as conn, connect(broker) as sender:
        got: dict[str, list[Any]] = {q.name: [] for q in queues}
        channels = [conn.channel() for _ in queues]
        for channel, queue in zip(channels, queues, strict=True):
            Consumer(
                channel,
                [queue],
                on_message=lambda m, name=queue.name: (got[name].append(m.payload), m.ack()),
            ).consume()

        def received() -> bool:
            # Redis fanout is pub/sub: only listeners subscribed when it is sent hear it,
            # so publish until both have (a copy more or less is the nature of broadcast)
            Producer(sender.default_channel).publish("hello", exchange=exchange, declare=[exchange])
            with suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
            return all(got.values())

        wait_for(received, timeout=10)
        assert all(set(payloads) == {"hello"} for payloads in got.values())
        for channel in channels:
            channel.close()
