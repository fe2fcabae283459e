"""Progress is stored *and* announced; ``async def`` tasks run on the worker's own loop."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from nbqueue import states
from nbqueue.progress import Progress
from tests.helpers import wait_for


def record_events(worker):
    events = []
    worker.emit_task_event = lambda type_, task_id, **fields: events.append(
        {"type": type_, "uuid": task_id, **fields}
    )
    return events


def test_progress_stores_the_state_and_emits_a_task_progress_event(app):
    gate = threading.Event()

    @app.task(bind=True)
    def download(self, n):
        for i in range(n):
            self.progress(i + 1, n, file=f"part{i}")
        self.update_state(state="VERIFYING", meta={"checksum": "ok"})
        self.update_state(state=states.STARTED, meta={})  # built-in: the worker's own event
        gate.wait(10)
        return n

    with app.worker(concurrency=1) as worker:
        events = record_events(worker)
        result = download.delay(3)
        with Progress(result) as progress:
            wait_for(lambda: result.state == states.STARTED)
            gate.set()
            assert result.get(timeout=10) == 3
            snapshot = progress.snapshot()
        assert worker.drain(10)
    custom = [e for e in events if e["type"] not in ("task-started", "task-succeeded")]
    assert [e["type"] for e in custom] == ["task-progress"] * 3 + ["task-verifying"]
    assert custom[-2] == {
        "type": "task-progress",
        "uuid": result.id,
        "state": "PROGRESS",
        "meta": {"current": 3, "total": 3, "file": "part2"},
    }
    assert custom[-1]["meta"] == {"checksum": "ok"}
    assert snapshot.state == states.SUCCESS


def test_a_failing_event_emitter_never_breaks_the_task(app, caplog):
    @app.task(bind=True)
    def steady(self):
        self.progress(1, 2)
        return "done"

    def broken(type_, task_id, **fields):
        if type_ == "task-progress":
            raise ConnectionError("events down")

    with caplog.at_level(logging.ERROR), app.worker(concurrency=1) as worker:
        worker.emit_task_event = broken
        result = steady.delay()
        assert result.get(timeout=10) == "done"
    assert "could not announce state PROGRESS" in caplog.text


def test_progress_outside_a_worker_only_stores(app):
    @app.task(bind=True)
    def local(self):
        self.progress(1, 1)
        return self.request.id

    app.conf.task_store_eager_result = True
    result = local.apply()
    assert result.get() == result.id


def test_async_tasks_run_on_the_workers_own_loop_thread_concurrently(app):
    seen = []
    both_started = []

    @app.task(name="t.handshake")
    async def handshake(me):
        seen.append((threading.current_thread().name, id(asyncio.get_running_loop())))
        both_started.append(me)
        while len(both_started) < 2:  # each waits for the other: they must interleave
            await asyncio.sleep(0.001)
        return me

    async def in_the_kernel():
        kernel_loop = id(asyncio.get_running_loop())
        with app.worker(concurrency=2, hostname="aw@test"):
            results = [handshake.delay(i) for i in range(2)]
            values = await asyncio.to_thread(lambda: [r.get(timeout=10) for r in results])
            return kernel_loop, values

    kernel_loop, values = asyncio.run(in_the_kernel())
    assert values == [0, 1]
    assert {name for name, _ in seen} == {"nbqueue-aw@test-asyncio"}
    assert len({loop_id for _, loop_id in seen}) == 1
    assert kernel_loop not in {loop_id for _, loop_id in seen}


def test_async_task_errors_and_eager_async_calls(app):
    @app.task
    async def broken():
        await asyncio.sleep(0)
        raise LookupError("async failure")

    @app.task
    async def twice(x):
        await asyncio.sleep(0)
        return 2 * x

    assert twice.apply((4,)).get() == 8  # eagerly: on a loop of its own, not the caller's
    with app.worker(concurrency=1):
        with pytest.raises(LookupError, match="async failure"):
            broken.delay().get(timeout=10)
        assert twice.delay(5).get(timeout=10) == 10
