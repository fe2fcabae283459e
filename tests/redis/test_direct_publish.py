"""The client's direct publish on ``redis://``: kombu's envelope, byte for byte, in one
``LPUSH``; kombu's producer (declares, retries, errors) whenever the direct path fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from kombu import Producer

import nbqueue
from nbqueue.exceptions import BrokerError
from nbqueue.protocol import build_task_message
from nbqueue.transports import redis as redis_transport

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def app(redis_url: str) -> Iterator[Any]:
    application = nbqueue.App(
        "direct",
        broker=redis_url,
        backend=redis_url,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0},
    )
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def kombu_publishes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The routing keys published through kombu's `Producer.publish` (not the direct path)."""
    calls: list[Any] = []
    publish = Producer.publish

    def counting(self: Producer, body: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("routing_key"))
        return publish(self, body, **kwargs)

    monkeypatch.setattr(Producer, "publish", counting)
    return calls


@pytest.fixture(autouse=True)
def fixed_delivery_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_transport.Channel, "_next_delivery_tag", lambda self: "tag")


@pytest.mark.parametrize(
    ("options", "serializer"),
    [
        ({}, "json"),
        ({"priority": 7, "reply_to": "replies"}, "json"),
        ({"expires": 12.3456, "countdown": 5, "headers": {"x-extra": [1, "two"]}}, "json"),
        ({"priority": 3}, "pickle"),
    ],
)
def test_the_direct_envelope_is_kombus_byte_for_byte(
    app: Any,
    redis_client: redis.Redis,
    kombu_publishes: list[Any],
    options: dict[str, Any],
    serializer: str,
) -> None:
    message = build_task_message(
        "add", "0f0e0d0c-0b0a-4908-8706-050403020100", (1, 2), {"z": 3}, now=NOW, **options
    )
    route = app.router.route("add", (1, 2), {"z": 3}, {})
    app.broker.publish_task(message, route, serializer)  # first: declares, through kombu
    app.broker.publish_task(message, route, serializer)  # then direct
    assert kombu_publishes == ["celery"]
    keys = [key for key in redis_client.scan_iter(b"celery*")]
    assert len(keys) == 1  # the same priority list, as kombu chose it
    via_kombu, direct = redis_client.lrange(keys[0], 0, -1)[::-1]
    assert direct == via_kombu


def test_a_direct_publish_goes_to_kombus_priority_list(app: Any, redis_client: redis.Redis) -> None:
    @app.task(name="add", priority=9)
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, 2)
    add.delay(3, 4)
    assert redis_client.llen("celery\x06\x169") == 2


def test_a_connection_error_falls_back_to_kombus_retrying_publish(
    app: Any, redis_client: redis.Redis, kombu_publishes: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(0, 0)  # declares the queue: later sends go direct
    put = redis_transport.Channel._put
    failures: list[str] = []

    def flaky(self: Any, queue: str, message: Any, **kwargs: Any) -> None:
        if not failures:  # the direct path's LPUSH is lost with its connection
            failures.append(queue)
            raise redis.ConnectionError("connection reset")
        put(self, queue, message, **kwargs)

    monkeypatch.setattr(redis_transport.Channel, "_put", flaky)
    add.delay(1, 2)
    assert failures == ["celery"]
    assert kombu_publishes == ["celery", "celery"]  # the declare, then the fallback
    assert redis_client.llen("celery") == 2
    add.delay(3, 4)  # and direct again
    assert kombu_publishes == ["celery", "celery"]
    assert redis_client.llen("celery") == 3


def test_a_broker_that_stays_away_raises_after_the_retry_policy(
    app: Any, kombu_publishes: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(0, 0)
    tries: list[str] = []

    def down(self: Any, queue: str, message: Any, **kwargs: Any) -> None:
        tries.append(queue)
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(redis_transport.Channel, "_put", down)
    with pytest.raises(BrokerError, match="could not publish task add"):
        add.delay(1, 2)
    assert kombu_publishes == ["celery", "celery"]
    assert len(tries) == 1 + 2  # direct, then the 2 tries kombu makes alone with this policy


def test_inside_a_batch_kombu_pipelines_the_publishes(
    app: Any, redis_client: redis.Redis, kombu_publishes: list[Any]
) -> None:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(0, 0)
    with app.producer_batch():
        add.delay(1, 2)
        add.delay(3, 4)
    assert kombu_publishes == ["celery"] * 3
    assert redis_client.llen("celery") == 3
