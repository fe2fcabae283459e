"""Results JSON cannot hold: signed cloudpickle that only the right key may open."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import nbqueue
from nbqueue import states
from nbqueue.exceptions import ContentDisallowed, DecodeError, SecurityError
from nbqueue.protocol import new_id

URL = "fakeredis://codec/0"  # one named fake server shared by the apps below


class Matrix:
    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows


@pytest.fixture
def apps() -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        app = nbqueue.App("codec", backend=URL, **settings)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_a_value_json_cannot_hold_is_stored_as_a_signed_marker(apps: Any) -> None:
    writer = apps(secret_key="k1")
    task_id = new_id()
    writer.backend.store_result(task_id, Matrix([[1, 2]]), states.SUCCESS)
    raw = writer.backend.client.get(writer.backend.task_key(task_id))
    assert b'"__nbqueue__": "application/x-nbqueue-cloudpickle"' in raw
    assert apps(secret_key="k1").AsyncResult(task_id).get(timeout=5).rows == [[1, 2]]


def test_a_reader_with_another_key_gets_a_clear_error(apps: Any) -> None:
    task_id = new_id()
    apps(secret_key="k1").backend.store_result(task_id, Matrix([[3]]), states.SUCCESS)
    with pytest.raises(SecurityError, match="another key"):
        apps(secret_key="k2").AsyncResult(task_id).get(timeout=5)


def test_a_reader_that_does_not_accept_cloudpickle_refuses_it(apps: Any) -> None:
    task_id = new_id()
    apps(secret_key="k1").backend.store_result(task_id, Matrix([[4]]), states.SUCCESS)
    with pytest.raises(ContentDisallowed):
        apps(secret_key="k1", accept_content=["json"]).AsyncResult(task_id).get(timeout=5)


def test_result_serializer_cloudpickle_pickles_every_result(apps: Any) -> None:
    app = apps(secret_key="k1", result_serializer="cloudpickle")
    task_id = new_id()
    app.backend.store_result(task_id, (1, 2), states.SUCCESS)
    assert app.AsyncResult(task_id).get(timeout=5) == (1, 2)  # a tuple stays a tuple


def test_garbage_under_a_result_key_is_a_decode_error(apps: Any) -> None:
    app = apps()
    task_id = new_id()
    app.backend.client.set(app.backend.task_key(task_id), b"[1, 2]")
    with pytest.raises(DecodeError):
        _ = app.AsyncResult(task_id).state
