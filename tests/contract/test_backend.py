"""The result-backend contract: memory, fakeredis and Redis store and wake the same way."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import nbqueue
from nbqueue import states
from nbqueue.exceptions import TimeoutError as ResultTimeout
from nbqueue.protocol import new_id
from tests.helpers import wait_for


class Point:
    """A value JSON cannot hold (like a notebook task returning an object of its own)."""

    def __init__(self, x: int) -> None:
        self.x = x


def test_a_stored_result_is_read_back(backend_app: Any) -> None:
    task_id = new_id()
    backend_app.backend.store_result(task_id, {"a": [1, 2]}, states.SUCCESS)
    result = backend_app.AsyncResult(task_id)
    assert result.state == states.SUCCESS
    assert result.get(timeout=5) == {"a": [1, 2]}
    assert result.date_done is not None


def test_nothing_stored_reads_as_pending(backend_app: Any) -> None:
    result = backend_app.AsyncResult(new_id())
    assert result.state == states.PENDING
    assert result.result is None
    with pytest.raises(ResultTimeout):
        result.get(timeout=0.2)


def test_a_failure_is_raised_as_the_original_exception(backend_app: Any) -> None:
    task_id = new_id()
    backend_app.backend.store_result(
        task_id, ValueError("kaboom", 1), states.FAILURE, traceback="Traceback: here"
    )
    result = backend_app.AsyncResult(task_id)
    with pytest.raises(ValueError) as info:
        result.get(timeout=5)
    assert info.value.args == ("kaboom", 1)
    assert result.traceback == "Traceback: here"
    assert isinstance(result.get(timeout=5, propagate=False), ValueError)


def test_a_stored_success_is_never_overwritten(backend_app: Any) -> None:
    backend = backend_app.backend
    task_id = new_id()
    backend.store_result(task_id, "first", states.SUCCESS)
    kept = backend.store_result(task_id, RuntimeError("late duplicate"), states.FAILURE)
    assert kept["status"] == states.SUCCESS and kept["result"] == "first"
    assert backend.get_meta(task_id)["result"] == "first"


def test_progress_states_are_stored_and_replaced(backend_app: Any) -> None:
    backend = backend_app.backend
    task_id = new_id()
    backend.store_result(task_id, {"current": 1, "total": 3}, "PROGRESS")
    assert backend_app.AsyncResult(task_id).info == {"current": 1, "total": 3}
    backend.store_result(task_id, 3, states.SUCCESS)
    assert backend_app.AsyncResult(task_id).get(timeout=5) == 3


def test_a_value_json_cannot_hold_comes_back(backend_app: Any) -> None:
    task_id = new_id()
    backend_app.backend.store_result(task_id, Point(7), states.SUCCESS)
    assert backend_app.AsyncResult(task_id).get(timeout=5).x == 7


def test_a_waiter_wakes_as_soon_as_the_result_is_stored(backend_app: Any) -> None:
    backend = backend_app.backend
    task_id = new_id()
    backend.on_task_call(task_id)
    entered = threading.Event()
    original = backend._wait

    def spy(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        return original(*args, **kwargs)

    backend._wait = spy
    got: list[Any] = []
    woke: list[float] = []

    def wait() -> None:
        # interval=5: a backend that polled would take seconds, not milliseconds
        got.append(backend_app.AsyncResult(task_id).get(timeout=30, interval=5))
        woke.append(time.monotonic())

    thread = threading.Thread(target=wait)
    thread.start()
    assert entered.wait(10), "the waiter never blocked"
    stored = time.monotonic()
    backend.store_result(task_id, 42, states.SUCCESS)
    thread.join(30)
    assert got == [42]
    assert woke[0] - stored < 2.5


def test_a_waiter_sees_intermediate_states(backend_app: Any) -> None:
    backend = backend_app.backend
    task_id = new_id()
    backend.store_result(task_id, None, states.STARTED)
    seen = backend.get_meta(task_id)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(backend._wait(task_id, 30, seen)))
    thread.start()
    backend.store_result(task_id, {"current": 2}, "PROGRESS")
    thread.join(30)
    assert result and result[0]["status"] == "PROGRESS"


def test_forget_deletes_the_result(backend_app: Any) -> None:
    task_id = new_id()
    backend_app.backend.store_result(task_id, 1, states.SUCCESS)
    result = backend_app.AsyncResult(task_id)
    assert result.get(timeout=5) == 1
    result.forget()
    assert backend_app.AsyncResult(task_id).state == states.PENDING


def test_results_expire(backend_url: str) -> None:
    app = nbqueue.App("contract-expiry", backend=backend_url, result_expires=1)
    try:
        task_id = new_id()
        app.backend.store_result(task_id, 1, states.SUCCESS)
        assert app.AsyncResult(task_id).state == states.SUCCESS
        wait_for(lambda: app.backend.get_meta(task_id)["status"] == states.PENDING, timeout=10)
    finally:
        app.close()


def test_a_group_is_saved_restored_and_deleted(backend_app: Any) -> None:
    members = [backend_app.AsyncResult(new_id()) for _ in range(3)]
    group = backend_app.GroupResult(new_id(), members).save()
    restored = nbqueue.GroupResult.restore(group.id, app=backend_app)
    assert restored is not None
    assert restored.id == group.id
    assert [r.id for r in restored.results] == [r.id for r in members]
    backend_app.backend.delete_group(group.id)
    assert nbqueue.GroupResult.restore(group.id, app=backend_app) is None


def _parts(app: Any, gid: str, ids: list[str], order: list[int], states_: dict[int, str]):
    outcomes = []
    for index in order:
        value = ValueError("bad") if states_.get(index) == states.FAILURE else index * 10
        outcomes.append(
            app.backend.add_chord_part(
                gid, ids[index], index, states_.get(index, states.SUCCESS), value
            )
        )
    return outcomes


def test_a_chord_join_returns_every_result_in_order_once(backend_app: Any) -> None:
    gid, ids = new_id(), [new_id() for _ in range(3)]
    backend_app.backend.set_chord_size(gid, 3)
    outcomes = _parts(backend_app, gid, ids, [2, 0, 2, 1], {})  # index 2 reported twice
    assert outcomes[:3] == [None, None, None]
    assert outcomes[3] == [(ids[0], "SUCCESS", 0), (ids[1], "SUCCESS", 10), (ids[2], "SUCCESS", 20)]
    backend_app.backend.on_chord_body_applied(gid)
    assert _parts(backend_app, gid, ids, [1], {}) == [None]  # a late copy changes nothing


def test_a_failed_chord_part_comes_back_as_the_exception(backend_app: Any) -> None:
    gid, ids = new_id(), [new_id() for _ in range(2)]
    backend_app.backend.set_chord_size(gid, 2)
    outcomes = _parts(backend_app, gid, ids, [0, 1], {1: states.FAILURE})
    parts = outcomes[-1]
    assert parts[0] == (ids[0], "SUCCESS", 0)
    assert parts[1][:2] == (ids[1], "FAILURE")
    assert isinstance(parts[1][2], ValueError)


def test_racing_chord_parts_complete_the_chord_exactly_once(backend_app: Any) -> None:
    gid, ids = new_id(), [new_id() for _ in range(8)]
    backend_app.backend.set_chord_size(gid, len(ids))
    barrier = threading.Barrier(len(ids))
    winners: list[Any] = []

    def report(index: int) -> None:
        barrier.wait(10)
        parts = backend_app.backend.add_chord_part(gid, ids[index], index, "SUCCESS", index)
        if parts is not None:
            winners.append(parts)

    threads = [threading.Thread(target=report, args=(i,)) for i in range(len(ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1
    assert [value for _, _, value in winners[0]] == list(range(len(ids)))


def test_listeners_hear_every_state_of_a_watched_task(backend_app: Any) -> None:
    backend = backend_app.backend
    task_id = new_id()
    heard: list[str] = []
    cond = threading.Condition()

    def listener(tid: str, meta: dict[str, Any]) -> None:
        if tid == task_id:
            with cond:
                heard.append(meta["status"])
                cond.notify_all()

    remove = backend.add_listener(listener)
    try:
        backend.watch(task_id)
        backend.get_meta(task_id)
        for state in (states.STARTED, "PROGRESS", states.SUCCESS):
            backend.store_result(task_id, None, state)
            wait_for(lambda s=state: s in heard, timeout=10, condition=cond)
        assert heard == [states.STARTED, "PROGRESS", states.SUCCESS]
    finally:
        remove()
