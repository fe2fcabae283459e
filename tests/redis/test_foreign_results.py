"""Hand-written results, read by nbqueue as the Celery 5.7 client read them (the capture)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import nbqueue
from nbqueue.exceptions import TimeoutError as ResultTimeout
from nbqueue.protocol import new_id
from tests.captures import load

CELERY_READ = load("celery_client_reads_foreign_results.json")


@pytest.fixture
def app(redis_url: str) -> Iterator[Any]:
    application = nbqueue.App("foreign", backend=redis_url)
    try:
        yield application
    finally:
        application.close()


def _write(client: redis.Redis, task_id: str, meta: dict[str, Any], publish: bool = True):
    key, value = f"celery-task-meta-{task_id}", json.dumps({**meta, "task_id": task_id})
    client.set(key, value)
    if publish:
        client.publish(key, value)


def test_success_progress_and_a_minimal_meta(app: Any, redis_client: redis.Redis) -> None:
    ok, busy, minimal = new_id(), new_id(), new_id()
    _write(redis_client, ok, {"status": "SUCCESS", "result": {"a": [1, 2]}, "traceback": None})
    _write(redis_client, busy, {"status": "PROGRESS", "result": {"current": 3}})
    _write(redis_client, minimal, {"status": "SUCCESS", "result": 42})
    assert app.AsyncResult(ok).get(timeout=5) == CELERY_READ["ok_get"]
    assert [app.AsyncResult(busy).state, app.AsyncResult(busy).info] == CELERY_READ[
        "progress_state"
    ]
    assert app.AsyncResult(minimal).get(timeout=5) == CELERY_READ["minimal_meta_get"]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            {"exc_type": "ValueError", "exc_message": ["bad", 1], "exc_module": "builtins"},
            CELERY_READ["fail_exc"],
        ),
        (
            {"exc_type": "NbError", "exc_message": ["custom"], "exc_module": "nbqueue.errors"},
            CELERY_READ["fail_custom_exc"],
        ),
    ],
    ids=["builtin", "unknown-module"],
)
def test_failures_raise_the_exception_celery_raised(
    app: Any, redis_client: redis.Redis, stored: dict[str, Any], expected: list[str]
) -> None:
    task_id = new_id()
    _write(
        redis_client, task_id, {"status": "FAILURE", "result": stored, "traceback": "Traceback..."}
    )
    result = app.AsyncResult(task_id)
    with pytest.raises(Exception) as info:
        result.get(timeout=5)
    _, name, shown = expected
    assert type(info.value).__name__ == name
    assert repr(info.value) == shown
    assert result.traceback == CELERY_READ["fail_traceback_attr"]


def test_a_result_set_without_publish_after_waiting_began_is_missed_like_celery(
    app: Any, redis_client: redis.Redis
) -> None:
    task_id = new_id()
    app.backend.on_task_call(task_id)
    entered = threading.Event()
    original = app.backend._wait

    def spy(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        return original(*args, **kwargs)

    app.backend._wait = spy
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            app.AsyncResult(task_id).get(timeout=1.0)
        except ResultTimeout as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    assert entered.wait(10)
    _write(redis_client, task_id, {"status": "SUCCESS", "result": 1}, publish=False)
    thread.join(10)
    assert CELERY_READ["set_without_publish_get"].startswith("TimeoutError")
    assert len(outcome) == 1  # no polling: only the published write wakes a waiter
    assert app.AsyncResult(task_id).get(timeout=5) == 1  # a later get reads it
