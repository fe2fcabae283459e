"""Shared test setup: markers per folder, service detection, and a thread-leak guard."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: folder -> marker added to every test in it
FOLDER_MARKERS = {
    "redis": "redis",
    "interop": "celery",
    "kernel": "kernel",
    "browser": "browser",
    "integration": "integration",
    "notebooks": "notebook",
}

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(HERE).parts
        marker = FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if marker:
            item.add_marker(getattr(pytest.mark, marker))


def service_missing(what: str) -> None:
    """Skip on a developer laptop without the service; fail under CI, where it must run."""
    message = f"{what} is not available"
    if CI:
        pytest.fail(f"{message} (CI=true: service-backed tests must run, not skip)")
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> str:
    """``host:port`` of the Redis on loopback, or skip (fail under CI)."""
    if not _port_open(REDIS_HOST, REDIS_PORT):
        service_missing(f"Redis on {REDIS_HOST}:{REDIS_PORT}")
    return f"{REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """``amqp://`` URL of the RabbitMQ on loopback (guest/guest, vhost ``/``), or skip (fail
    under CI). Tests name their queues uniquely and delete them afterwards."""
    if not _port_open(RABBITMQ_HOST, RABBITMQ_PORT):
        service_missing(f"RabbitMQ on {RABBITMQ_HOST}:{RABBITMQ_PORT}")
    return f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}//"


_TEST_DBS = range(8, 16)


def _claim_db(client: object, token: str, timeout: float = 60.0) -> int:
    """A database number no other test *process* uses now: claimed with a key in db 0
    (several engineers' suites share the server; a per-process list is not enough)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        for db in reversed(_TEST_DBS):  # from 15 down: older fixtures took 8 first, unclaimed
            if client.set(f"nbqueue-tests:db{db}", token, nx=True, ex=600):
                return db
        if time.monotonic() > deadline:
            pytest.fail("no free Redis test database (8-15) within 60 s")
        pause.wait(0.1)


@pytest.fixture
def redis_db(redis_server: str) -> Iterator[int]:
    """A Redis database number of our own, flushed before and after the test."""
    import redis

    token = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    claims = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    db = _claim_db(claims, token)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    try:
        yield db
    finally:
        client.flushdb()
        client.close()
        if claims.get(f"nbqueue-tests:db{db}") == token.encode():
            claims.delete(f"nbqueue-tests:db{db}")
        claims.close()


@pytest.fixture
def redis_url(redis_db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"


@pytest.fixture
def redis_client(redis_db: int) -> Iterator[Any]:
    """A plain redis-py client on the test's own database, to look at keys directly."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    yield client
    client.close()


def _nbqueue_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nbqueue-") and t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves ``nbqueue-*`` threads running, printing their stacks."""
    before = {t.ident for t in _nbqueue_threads()}
    yield
    deadline = time.monotonic() + 10
    leaked = [t for t in _nbqueue_threads() if t.ident not in before]
    for thread in leaked:
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = [t for t in leaked if t.is_alive()]
    if leaked:
        frames = sys._current_frames()
        stacks = "\n".join(
            f"--- {t.name}\n" + "".join(traceback.format_stack(frames[t.ident]))
            for t in leaked
            if t.ident in frames
        )
        pytest.fail(f"test left {len(leaked)} nbqueue thread(s) running:\n{stacks}")


@pytest.fixture
def app() -> Iterator[object]:
    """A fresh in-process app, closed after the test."""
    import nbqueue

    application = nbqueue.App("test")
    try:
        yield application
    finally:
        application.close()
