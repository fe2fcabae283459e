"""Celery apps and in-thread Celery workers for the interop tests (real Celery 5.7)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.interop import interop_tasks


def _celery_app(url: str) -> Any:
    from celery import Celery

    app = Celery("interop", broker=url, backend=url)
    app.conf.update(
        worker_hijack_root_logger=False,  # an in-thread worker must not take over logging
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
        # one backend for every thread (else the worker thread's own is left for the GC,
        # open sockets and all, when the thread ends)
        result_backend_thread_safe=True,
        task_default_queue="celery",
    )
    for name, fn in interop_tasks.NAMES.items():
        app.task(name=name)(fn)
    return app


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[Any]:
    """A Celery 5.7 app on the test's Redis database (broker and backend)."""
    app = _celery_app(redis_url)
    try:
        yield app
    finally:
        # Celery's backend holds every result it sent until the backend goes, and their
        # __del__ unsubscribes: let that happen now, then close its pub/sub connection
        # (app.close() leaves it open)
        app.backend._pending_results.concrete.clear()
        gc.collect()
        app.backend.result_consumer.stop()
        app.backend.client.connection_pool.disconnect()
        app.close()


@pytest.fixture
def celery_worker(celery_app: Any) -> Callable[..., AbstractContextManager[Any]]:
    """``with celery_worker(queues=[...]):`` a real Celery worker in a thread (solo pool)."""
    from celery.contrib.testing.worker import start_worker

    def start(queues: list[str]) -> AbstractContextManager[Any]:
        return start_worker(
            celery_app,
            pool="solo",
            perform_ping_check=False,
            queues=queues,
            shutdown_timeout=30,
        )

    return start


@pytest.fixture(autouse=True)
def _restore_root_logger():
    """Celery's in-thread worker re-runs its logging setup (root level, handlers): undo it,
    so later tests' log capture sees what they expect."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
