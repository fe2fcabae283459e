"""The result listener on a real server: a lost pub/sub connection loses no result."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import nbqueue
from nbqueue import states
from nbqueue.backends import redis_listener
from nbqueue.protocol import new_id
from tests.helpers import wait_for


@pytest.fixture(autouse=True, params=["hiredis", "redis-py"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with both ways of reading replies: our hiredis reader, redis-py's parser."""
    if request.param == "hiredis" and redis_listener.hiredis is None:
        pytest.skip("hiredis is not installed")
    if request.param == "redis-py":
        monkeypatch.setattr(redis_listener, "hiredis", None)
    return request.param


@pytest.fixture
def app(redis_url: str) -> Iterator[Any]:
    application = nbqueue.App("listener", backend=redis_url)
    try:
        yield application
    finally:
        application.close()


def test_a_result_published_while_the_listener_was_away_still_wakes_its_waiter(
    app: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = app.backend
    task_id = new_id()
    backend.watch(task_id)  # subscribed (confirmed)
    listener = backend.listener
    entered = threading.Event()
    original_wait = backend._wait

    def spy(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        return original_wait(*args, **kwargs)

    monkeypatch.setattr(backend, "_wait", spy)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(app.AsyncResult(task_id).get(30)))
    waiter.start()
    assert entered.wait(10)
    # hold the listener's reconnection until the result was published (and so missed)
    allowed = threading.Event()
    original_connect = listener._connect
    monkeypatch.setattr(listener, "_connect", lambda: allowed.wait(20) and original_connect())
    port = listener._conn._sock.getsockname()[1]
    assert redis_client.execute_command("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")
    wait_for(lambda: listener._conn is None, message="the listener noticed its lost connection")
    backend.store_result(task_id, "stored while away", states.SUCCESS)
    allowed.set()
    waiter.join(30)
    assert got == ["stored while away"]


def test_forget_drops_the_subscription_and_the_cached_result(app: Any) -> None:
    backend = app.backend
    task_id = new_id()
    backend.watch(task_id)  # subscribed (confirmed): the published result is cached
    backend.store_result(task_id, 1, states.SUCCESS)
    assert app.AsyncResult(task_id).get(timeout=5) == 1
    wait_for(lambda: backend.listener.ready(task_id) is not None, message="cached from pub/sub")
    app.AsyncResult(task_id).forget()
    assert backend.listener.ready(task_id) is None
    assert app.AsyncResult(task_id).state == states.PENDING
    assert backend.listener.watching() == 0


def test_a_burst_of_results_and_a_result_larger_than_one_read_all_arrive(
    app: Any, reader: str
) -> None:
    backend = app.backend
    ids = [new_id() for _ in range(300)]
    for task_id in ids:
        backend.watch(task_id)  # subscribed (confirmed): every result comes by pub/sub
    big = "x" * 200_000  # more than one recv's worth: a reply split across reads
    for n, task_id in enumerate(ids):
        backend.store_result(task_id, big if n == 150 else n, states.SUCCESS)
    got = [app.AsyncResult(task_id).get(timeout=30) for task_id in ids]
    assert got == [big if n == 150 else n for n in range(300)]
    wait_for(lambda: backend.listener.watching() == 0, message="every channel unsubscribed")
    assert (backend.listener._reader is not None) == (reader == "hiredis")


def test_a_result_read_from_its_key_ends_the_watch(app: Any) -> None:
    backend = app.backend
    task_id = new_id()
    backend.store_result(task_id, 5, states.SUCCESS)  # published before anyone subscribed
    assert app.AsyncResult(task_id).get(timeout=5) == 5  # read from the key, not a message
    assert backend.listener.watching() == 0
    assert backend.listener.ready(task_id) is not None


def _subscribed(redis_client: redis.Redis, app: Any, ids: list[str]) -> list[int]:
    channels = [app.backend.task_key(task_id) for task_id in ids]
    return [count for _, count in redis_client.pubsub_numsub(*channels)]


def test_channels_of_ready_tasks_are_unsubscribed_in_batches(
    app: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = app.backend
    monkeypatch.setattr(backend.listener, "unsubscribe_batch", 10)
    ids = [new_id() for _ in range(25)]
    for task_id in ids:
        backend.watch(task_id)
    assert _subscribed(redis_client, app, ids) == [1] * 25
    for task_id in ids:
        backend.store_result(task_id, task_id, states.SUCCESS)
    assert [app.AsyncResult(task_id).get(timeout=10) for task_id in ids] == ids
    # two full batches at once, the last five once the connection is quiet
    wait_for(lambda: _subscribed(redis_client, app, ids) == [0] * 25, message="all unsubscribed")


def test_a_task_id_watched_again_before_its_channel_is_left_stays_subscribed(
    app: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = app.backend
    listener = backend.listener
    monkeypatch.setattr(listener, "unsubscribe_idle", 60.0)  # batches only
    task_id, other = new_id(), new_id()
    backend.watch(task_id)
    backend.store_result(task_id, "first", states.FAILURE)
    wait_for(lambda: listener.ready(task_id) is not None, message="the failure received")
    pending = listener.watch(task_id)  # watched again before its channel was left
    monkeypatch.setattr(listener, "unsubscribe_batch", 1)  # the next ready task leaves them
    backend.watch(other)
    backend.store_result(other, 1, states.SUCCESS)
    wait_for(lambda: _subscribed(redis_client, app, [other]) == [0], message="the batch left")
    assert _subscribed(redis_client, app, [task_id]) == [1]
    backend.store_result(task_id, "second", states.SUCCESS)  # a failure may be overwritten
    wait_for(lambda: pending.ready, message="the new result received by pub/sub")
    assert app.AsyncResult(task_id).get(timeout=5) == "second"


def test_a_waiter_whose_result_came_just_after_its_read_does_not_subscribe_again(
    app: Any,
) -> None:
    backend = app.backend
    task_id = new_id()
    backend.watch(task_id)
    seen = backend.get_meta(task_id)  # the waiter's read: nothing yet
    backend.store_result(task_id, 3, states.SUCCESS)
    wait_for(lambda: backend.listener.ready(task_id) is not None, message="the result received")
    assert backend._wait(task_id, 5, seen)["result"] == 3  # from the cache
    assert backend.listener.watching() == 0
