"""One broker and one backend per transport: the contract suites run against each of them.

* ``memory``    nbqueue's in-process transport (``nbmemory://``) and dict backend
* ``fakeredis`` kombu's Redis transport on an in-process fake Redis, and the Redis backend on it
* ``redis``     the real server on 127.0.0.1:6379 (a flushed database of the test's own)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from nbqueue.messaging import resolve_broker_url

KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]

#: priorities 0..9 in the order each transport serves them (its documented order)
PRIORITY_ORDER = {
    # 9 first, every level apart (like RabbitMQ)
    "memory": [9, 7, 5, 2, 0],
    # Redis: 0 first, levels rounded down to the steps 0/3/6/9 (FIFO within a step)
    "fakeredis": [0, 2, 5, 7, 9],
    "redis": [0, 2, 5, 7, 9],
}


@dataclass
class BrokerKind:
    """A transport under contract: its URL and how to ask for a short visibility timeout."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

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


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest) -> BrokerKind:
    kind = request.param
    return BrokerKind(kind, resolve_broker_url(_url(kind, request), "unused"))


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
