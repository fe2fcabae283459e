"""Results in Redis, both ways: a Celery 5.7 client reads ours, we read Celery's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import nbqueue
from nbqueue import states
from nbqueue.protocol import new_id

# Celery 5.7's Redis backend calls redis-py 8's deprecated setex(): theirs, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


@pytest.fixture
def nb_app(redis_url: str) -> Iterator[Any]:
    app = nbqueue.App("interop-nb", backend=redis_url, task_track_started=True)
    try:
        yield app
    finally:
        app.close()


class Opaque:
    """A value only cloudpickle can carry."""

    def __init__(self, x: int) -> None:
        self.x = x


def test_a_celery_client_reads_what_an_nbqueue_worker_stored(nb_app: Any, celery_app: Any):
    @nb_app.task
    def add(x: int, y: int) -> int:
        return x + y

    @nb_app.task
    def fail() -> None:
        raise KeyError("missing")

    @nb_app.task(bind=True)
    def progress(self: Any) -> str:
        self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
        return "done"

    with nb_app.worker(concurrency=2):
        ok, bad = add.delay(2, 3), fail.delay()
        ok.get(timeout=10)
        with pytest.raises(KeyError):
            bad.get(timeout=10)
    assert celery_app.AsyncResult(ok.id).get(timeout=10) == 5
    theirs = celery_app.AsyncResult(bad.id)
    with pytest.raises(KeyError) as info:
        theirs.get(timeout=10)
    assert info.value.args == ("missing",)
    assert "Traceback" in theirs.traceback
    task_id = new_id()
    nb_app.backend.store_result(task_id, {"current": 1, "total": 2}, "PROGRESS")
    assert celery_app.AsyncResult(task_id).state == "PROGRESS"
    assert celery_app.AsyncResult(task_id).info == {"current": 1, "total": 2}


def test_a_waiting_celery_client_is_woken_by_our_store(nb_app: Any, celery_app: Any) -> None:
    task_id = new_id()
    theirs = celery_app.AsyncResult(task_id)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(theirs.get(timeout=20)))
    waiter.start()
    # Celery GETs once and then listens; whichever way it sees our write, it must see it
    nb_app.backend.store_result(task_id, [1, "two"], states.SUCCESS)
    waiter.join(30)
    assert got == [[1, "two"]]


def test_a_value_only_nbqueue_can_read_is_an_opaque_dict_to_celery(
    nb_app: Any, celery_app: Any
) -> None:
    task_id = new_id()
    nb_app.backend.store_result(task_id, Opaque(3), states.SUCCESS)
    assert nb_app.AsyncResult(task_id).get(timeout=5).x == 3
    marker = celery_app.AsyncResult(task_id).get(timeout=5)
    assert set(marker) == {"__nbqueue__", "value"}


def test_we_read_what_celery_stored(nb_app: Any, celery_app: Any) -> None:
    backend = celery_app.backend
    ok, bad, busy = new_id(), new_id(), new_id()
    backend.store_result(ok, {"a": [1, 2]}, states.SUCCESS)
    try:
        raise ValueError("bad", 1)
    except ValueError as exc:
        backend.mark_as_failure(bad, exc, traceback="Traceback (celery)")
    backend.store_result(busy, {"current": 3}, "PROGRESS")
    assert nb_app.AsyncResult(ok).get(timeout=5) == {"a": [1, 2]}
    with pytest.raises(ValueError) as info:
        nb_app.AsyncResult(bad).get(timeout=5)
    assert info.value.args == ("bad", 1)
    assert nb_app.AsyncResult(bad).traceback == "Traceback (celery)"
    assert nb_app.AsyncResult(busy).state == "PROGRESS"
    assert nb_app.AsyncResult(busy).info == {"current": 3}


def test_our_waiter_is_woken_by_celerys_store(nb_app: Any, celery_app: Any) -> None:
    task_id = new_id()
    nb_app.backend.on_task_call(task_id)  # as when we send the task ourselves
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(nb_app.AsyncResult(task_id).get(20)))
    waiter.start()
    celery_app.backend.store_result(task_id, "from celery", states.SUCCESS)
    waiter.join(30)
    assert got == ["from celery"]


def test_a_saved_group_reads_both_ways(nb_app: Any, celery_app: Any) -> None:
    # Celery's own key and decoding, without building Celery GroupResults: those stay
    # referenced until interpreter exit and then fail in __del__ (Celery's, not ours)
    backend = celery_app.backend
    ids = [new_id(), new_id()]
    ours = nb_app.GroupResult(new_id(), [nb_app.AsyncResult(i) for i in ids]).save()
    stored = backend.decode(backend.get(backend.get_key_for_group(ours.id)))
    assert stored == {"result": [[ours.id, None], [[[i, None], None] for i in ids]]}
    gid = new_id()
    backend.save_group(gid, nb_app.GroupResult(gid, [nb_app.AsyncResult(i) for i in ids]))
    restored = nbqueue.GroupResult.restore(gid, app=nb_app)
    assert [r.id for r in restored.results] == ids
