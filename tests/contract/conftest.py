"""One broker and one backend per transport: the contract suites run against each of them.

* ``memory``    nbqueue's in-process transport (``nbmemory://``) and dict backend
* ``fakeredis`` kombu's Redis transport on an in-process fake Redis, and the Redis backend on it
* ``redis``     the real server on 127.0.0.1:6379 (a flushed database of the test's own)
* ``amqp``      RabbitMQ on 127.0.0.1:5672 through kombu's py-amqp transport (brokers only:
  results go to Redis); every queue and exchange a test names is its own and deleted after

Tests name queues through `BrokerKind.name` so that runs never share a queue on a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from nbqueue.messaging import resolve_broker_url

KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
AMQP_KINDS = [pytest.param("amqp", id="amqp", marks=pytest.mark.rabbitmq)]
BROKER_KINDS = [*KINDS, *AMQP_KINDS]

#: priorities 0..9 in the order each transport serves them (its documented order)
PRIORITY_ORDER = {
    # 9 first, every level apart (like RabbitMQ)
    "memory": [9, 7, 5, 2, 0],
    # Redis: 0 first, levels rounded down to the steps 0/3/6/9 (FIFO within a step)
    "fakeredis": [0, 2, 5, 7, 9],
    "redis": [0, 2, 5, 7, 9],
    # RabbitMQ: 9 first, on a queue declared with x-max-priority (nbqueue's
    # task_queue_max_priority setting); without that argument it ignores priorities
    "amqp": [9, 7, 5, 2, 0],
}
#: what RabbitMQ needs on a queue for priorities to count
MAX_PRIORITY = {"x-max-priority": 9}


@dataclass
class BrokerKind:
    """A transport under contract: its URL and how to ask for a short visibility timeout."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    #: every queue/exchange name handed out, so a server-side broker can delete them after
    names: list[str] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"contract-{uuid.uuid4().hex[:8]}")

    @property
    def virtual(self) -> bool:
        """kombu's virtual transports (memory, Redis) as opposed to a real AMQP broker."""
        return self.name != "amqp"

    def unique(self, base: str) -> str:
        """A name of this test's own, e.g. ``contract-1a2b3c4d-q``."""
        name = f"{self.prefix}-{base}"
        self.names.append(name)
        return name

    def queue(self, base: str = "q", exchange: Exchange | None = None, **kw: Any) -> Queue:
        """A queue of this test's own (on RabbitMQ with ``x-max-priority``, as nbqueue with
        ``task_queue_max_priority`` declares it)."""
        arguments = MAX_PRIORITY if self.name == "amqp" else None
        return Queue(self.unique(base), exchange, queue_arguments=arguments, **kw)

    def visibility_options(self, timeout: float) -> dict[str, Any]:
        """Transport options for a `timeout`-second visibility timeout, swept promptly."""
        options = {"visibility_timeout": timeout}
        if self.name != "memory":  # kombu's Redis sweep: every interval, every n-th call
            options.update(unacked_restore_interval=0.1, unacked_restore_throttle=1)
        return options


def _url(kind: str, request: pytest.FixtureRequest) -> str:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    if kind == "memory":
        return f"nbmemory://{name}"
    if kind == "fakeredis":
        return f"fakeredis://{name}/0"
    return request.getfixturevalue("redis_url")


@pytest.fixture(params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerKind]:
    kind = request.param
    if kind == "amqp":
        url = request.getfixturevalue("rabbitmq_url")
    else:
        url = resolve_broker_url(_url(kind, request), "unused")
    under_contract = BrokerKind(kind, url)
    yield under_contract
    if kind == "amqp":
        delete_names(url, under_contract.names)


def delete_names(url: str, names: list[str]) -> None:
    """Delete the queues and exchanges called `names` on a RabbitMQ (missing ones are fine)."""
    with Connection(url) as conn:
        for name in names:
            for delete in ("queue_delete", "exchange_delete"):
                channel = conn.channel()  # a failed delete closes its channel: one each
                with suppress(*conn.channel_errors):
                    getattr(channel, delete)(name)
                with suppress(*conn.channel_errors, *conn.connection_errors):
                    channel.close()


@pytest.fixture(params=KINDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    kind = request.param
    return "memory://" if kind == "memory" else _url(kind, request)


@pytest.fixture
def backend_app(backend_url: str) -> Iterator[Any]:
    """An app whose result backend is the one under contract (results expire in 1 day)."""
    import nbqueue

    app = nbqueue.App("contract", backend=backend_url)
    try:
        yield app
    finally:
        app.close()
