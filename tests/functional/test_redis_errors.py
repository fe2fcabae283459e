"""An unreachable Redis gives nbqueue's own errors, quickly, and leaves nothing running."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

import nbqueue
from nbqueue.exceptions import BackendError, BootstepError, BrokerError


@pytest.fixture
def dead_url() -> str:
    """A loopback Redis URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}"


@pytest.fixture
def dead_app(dead_url: str) -> Iterator[Any]:
    app = nbqueue.App(
        "dead",
        broker=f"{dead_url}/0",
        backend=f"{dead_url}/1",
        broker_connection_max_retries=0,
        broker_transport_options={"max_retries": 0},
        task_publish_retry=False,
    )

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    try:
        yield app
    finally:
        app.close()


def test_sending_to_a_dead_broker_raises_broker_error(dead_app: Any) -> None:
    with pytest.raises(BrokerError, match="cannot connect to broker"):
        dead_app.tasks["add"].delay(1, 2)


def test_reading_a_dead_backend_raises_backend_error(dead_app: Any) -> None:
    with pytest.raises(BackendError, match="could not read the result"):
        _ = dead_app.AsyncResult("some-id").state
    with pytest.raises(BackendError, match="could not store"):
        dead_app.backend.store_result("some-id", 1, "SUCCESS")


def test_a_worker_on_a_dead_broker_fails_to_start_with_broker_error(dead_app: Any) -> None:
    with pytest.raises(BootstepError) as info:
        dead_app.worker().start()
    cause = info.value
    while cause is not None and not isinstance(cause, BrokerError):
        cause = cause.__cause__
    assert isinstance(cause, BrokerError)
