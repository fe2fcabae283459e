"""An in-process worker on a Redis broker and backend: the fake one, and the real server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import nbqueue
from tests.functional import redis_tasks
from tests.helpers import wait_for


@pytest.fixture(
    params=[
        pytest.param("fakeredis", id="fakeredis"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def redis_app(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An app whose broker and backend are one (fake or real) Redis database."""
    url = "fakeredis://" if request.param == "fakeredis" else request.getfixturevalue("redis_url")
    app = nbqueue.App("rw", broker=url, backend=url)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def tasks(redis_app: Any) -> dict[str, Any]:
    return redis_tasks.register(redis_app)


@pytest.fixture
def gate() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    key = uuid.uuid4().hex
    opened, started = threading.Event(), threading.Event()
    redis_tasks.GATES[key], redis_tasks.STARTED[key] = opened, started
    try:
        yield key, opened, started
    finally:
        opened.set()
        redis_tasks.GATES.pop(key, None)
        redis_tasks.STARTED.pop(key, None)


def _waiting(app: Any, queue: str = "celery") -> list[bytes]:
    """The raw envelopes waiting in `queue` (priority bucket 0), in delivery order."""
    return list(reversed(app.backend.client.lrange(queue, 0, -1)))


def test_tasks_run_and_results_come_back(redis_app: Any, tasks: dict[str, Any]) -> None:
    with redis_app.worker(concurrency=4):
        results = [tasks["add"].delay(i, i) for i in range(200)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(200)]


def test_a_notebook_task_travels_by_value_and_returns_an_object(redis_app: Any) -> None:
    class Box:
        def __init__(self, value: int) -> None:
            self.value = value

    @redis_app.task
    def boxed(value: int) -> Box:
        return Box(value * 2)

    assert not boxed.importable
    with redis_app.worker(concurrency=1):
        assert boxed.delay(21).get(timeout=10).value == 42


def test_a_chord_is_joined_in_redis_and_cleaned_up(redis_app: Any, tasks: dict[str, Any]) -> None:
    add, tsum = tasks["add"], tasks["tsum"]
    with redis_app.worker(concurrency=3):
        result = nbqueue.chord([add.s(i, i) for i in range(6)])(tsum.s())
        assert result.get(timeout=30) == 30
        gid = result.parent.id
        client, key = redis_app.backend.client, redis_app.backend.group_key
        wait_for(lambda: client.get(key(gid, ".c")) == b"done", message="the done marker")
        assert not any(client.exists(key(gid, suffix)) for suffix in (".j", ".t", ".s", ".d"))


def test_warm_stop_returns_reserved_messages_and_nothing_is_lost(
    redis_app: Any, tasks: dict[str, Any], gate: Any
) -> None:
    key, opened, started = gate
    worker = redis_app.worker(concurrency=1, prefetch_multiplier=4).start()
    results = [tasks["gated"].delay(key, i) for i in range(5)]
    assert started.wait(10)
    wait_for(lambda: worker.state.snapshot()["reserved"] >= 1, message="a prefetched message")
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    wait_for(lambda: len(_waiting(redis_app)) == 4, message="four messages back in the queue")
    opened.set()
    stopper.join(20)
    assert not stopper.is_alive()
    assert results[0].get(timeout=10) == 0
    with redis_app.worker(concurrency=2):
        assert [r.get(timeout=20) for r in results] == list(range(5))
    assert not redis_app.backend.client.hlen("unacked")


def test_a_late_ack_task_still_running_at_stop_is_restored_marked_redelivered(
    redis_app: Any, tasks: dict[str, Any], gate: Any
) -> None:
    key, opened, started = gate
    redis_app.conf.task_acks_late = True
    worker = redis_app.worker(concurrency=1, prefetch_multiplier=1, shutdown_timeout=0.1)
    worker.start()
    result = tasks["gated"].delay(key, 7)
    assert started.wait(10)
    worker.stop()  # the task outlives the shutdown timeout: its message goes back
    (restored,) = _waiting(redis_app)
    opened.set()
    assert b'"redelivered": true' in restored
    assert result.id.encode() in restored
    with redis_app.worker(concurrency=1):
        assert result.get(timeout=10) == 7


def test_stop_is_prompt_and_start_is_quick(redis_app: Any, tasks: dict[str, Any]) -> None:
    worker = redis_app.worker(concurrency=2)
    began = time.monotonic()
    worker.start()
    assert tasks["add"].delay(1, 2).get(timeout=10) == 3
    started = time.monotonic() - began
    began = time.monotonic()
    worker.stop()
    stopped = time.monotonic() - began
    assert stopped < 1.0, f"stop took {stopped:.2f} s (waiting on a BRPOP or a poll?)"
    assert started < 5.0


def test_an_idle_worker_is_woken_at_once(redis_app: Any, tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    with redis_app.worker(concurrency=1):
        add.delay(0, 0).get(timeout=10)
        delays = []
        for i in range(20):
            sent = time.perf_counter()
            add.delay(i, i).get(timeout=10)
            delays.append(time.perf_counter() - sent)
    delays.sort()
    assert delays[len(delays) // 2] < 0.05, delays  # no 0.25 s poll, no 1 s BRPOP timeout
