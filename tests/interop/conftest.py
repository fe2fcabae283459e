"""Celery apps and in-thread Celery workers for the interop tests (real Celery 5.7)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.interop import interop_tasks

ROOT = Path(__file__).resolve().parents[2]


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
        app.task(name=name, shared=False)(fn)  # shared tasks would join every later app
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


class CeleryProcess:
    """A ``celery worker`` subprocess on Redis; stopped by its pid, its log kept."""

    def __init__(
        self,
        broker: str,
        hostname: str,
        log_path: Path,
        loglevel: str = "INFO",
        backend: str | None = None,
    ) -> None:
        env = dict(os.environ, NBQUEUE_INTEROP_BROKER=broker, PYTHONPATH=str(ROOT))
        if backend:
            env["NBQUEUE_INTEROP_BACKEND"] = backend
        self.hostname = hostname
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "celery", "-A", "tests.interop.celery_side", "worker"]
        command += ["-n", hostname, "-P", "threads", "-c", "2", "-l", loglevel, "-E"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown: worker-offline sent
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@pytest.fixture
def celery_process(redis_url, tmp_path):
    started: list[CeleryProcess] = []

    def start(hostname: str, loglevel: str = "INFO", backend: str | None = None) -> CeleryProcess:
        log_path = tmp_path / f"{hostname}.log"
        proc = CeleryProcess(redis_url, hostname, log_path, loglevel, backend)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def wait_until_answering(app, node: str, proc: CeleryProcess) -> None:
    def answers():
        assert proc.process.poll() is None, f"celery worker exited:\n{proc.log()}"
        return app.control.inspect(destination=[node], timeout=0.5).ping()

    wait_for(answers, timeout=60, message=f"{node} answering pings")
