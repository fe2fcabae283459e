"""The result listener on a real server: a lost pub/sub connection loses no result."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import nbqueue
from nbqueue import states
from nbqueue.protocol import new_id
from tests.helpers import wait_for


@pytest.fixture
def app(redis_url: str) -> Iterator[Any]:
    application = nbqueue.App("listener", backend=redis_url)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def admin(redis_db: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    yield client
    client.close()


def test_a_result_published_while_the_listener_was_away_still_wakes_its_waiter(
    app: Any, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
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
    assert admin.execute_command("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")
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
