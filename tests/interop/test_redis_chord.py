"""A chord whose header tasks run on a Celery 5.7 worker and an nbqueue worker completes.

Both join through Celery 5.7's Redis chord protocol (``<gid>.j .t .s .d .c`` and its Lua
scripts); the worker that records the last header result — chosen here with a gate —
claims the chord and sends the body, whoever built the chord.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import nbqueue
from tests.helpers import wait_for
from tests.interop import interop_tasks

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")

SIDES = {"celery": "celery_side", "nbqueue": "nb_side"}


@pytest.fixture
def nb_app(redis_url: str) -> Iterator[Any]:
    app = nbqueue.App("interop-chord", broker=redis_url, backend=redis_url)
    for name, fn in interop_tasks.NAMES.items():
        app.task(name=name)(fn)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def gate() -> Iterator[tuple[str, threading.Event]]:
    key = uuid.uuid4().hex
    opened = interop_tasks.GATES[key] = threading.Event()
    try:
        yield key, opened
    finally:
        opened.set()
        interop_tasks.GATES.pop(key, None)


def _header(build: Any, key: str, last: str) -> list[Any]:
    """add(1,1) on Celery, add(2,2) on nbqueue, and the gated add(3,3) on the `last` side."""
    return [
        build("interop.add", (1, 1), SIDES["celery"]),
        build("interop.add", (2, 2), SIDES["nbqueue"]),
        build("interop.gated_add", (key, 3, 3), SIDES[last]),
    ]


def _send_with_nbqueue(nb_app: Any, celery_app: Any, key: str, last: str) -> str:
    def build(name: str, args: tuple[Any, ...], queue: str) -> Any:
        return nb_app.signature(name, args, queue=queue)

    body = build("interop.tsum", (), SIDES["nbqueue"])
    return nbqueue.chord(_header(build, key, last))(body).id


def _send_with_celery(nb_app: Any, celery_app: Any, key: str, last: str) -> str:
    from celery import chord

    def build(name: str, args: tuple[Any, ...], queue: str) -> Any:
        return celery_app.signature(name, args, queue=queue)

    body = build("interop.tsum", (), SIDES["celery"])
    return chord(_header(build, key, last))(body).id


@pytest.mark.parametrize("last", ["celery", "nbqueue"])
@pytest.mark.parametrize("sender", [_send_with_nbqueue, _send_with_celery], ids=["nb", "celery"])
def test_a_mixed_chord_completes_once_whoever_joins_last(
    nb_app: Any, celery_app: Any, celery_worker: Any, gate: Any, sender: Any, last: str
) -> None:
    key, opened = gate
    with celery_worker([SIDES["celery"]]), nb_app.worker(concurrency=2, queues=[SIDES["nbqueue"]]):
        body_id = sender(nb_app, celery_app, key, last)
        joined = "celery-taskset-meta-{}.j"
        client = nb_app.backend.client

        def two_recorded() -> bool:
            keys = client.keys(joined.format("*"))
            return bool(keys) and client.zcard(keys[0]) == 2

        wait_for(two_recorded, timeout=30, message="the two ungated header results recorded")
        opened.set()
        assert nb_app.AsyncResult(body_id).get(timeout=30) == 12
        wait_for(
            lambda: [client.get(k) for k in client.keys("celery-taskset-meta-*.c")] == [b"done"],
            timeout=10,
            message="the chord cleaned up with the done marker",
        )
        assert not client.keys("celery-taskset-meta-*.j")
