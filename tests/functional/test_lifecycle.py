"""Starting, stopping and acknowledging: nothing is lost, nothing hangs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from tests.helpers import wait_for


def _gate_task(app, name="gated"):
    gate = threading.Event()
    running = threading.Event()

    @app.task(name=name)
    def gated(i):
        running.set()
        assert gate.wait(20)
        return i

    return gated, gate, running


def test_warm_stop_finishes_running_work_and_returns_reserved_messages_in_order(app):
    gated, gate, running = _gate_task(app)
    worker = app.worker(concurrency=1, prefetch_multiplier=4).start()
    results = [gated.delay(i) for i in range(5)]
    assert running.wait(10)
    assert worker.state.snapshot()["reserved"] >= 1
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    space = app.broker.space
    wait_for(
        lambda: space.sizes().get("celery") == 4,
        condition=space.cond,
        message="the four reserved messages back in the queue",
    )
    gate.set()
    stopper.join(20)
    assert not stopper.is_alive()
    assert results[0].get(timeout=1) == 0
    waiting = app.broker.space.peek("celery")
    assert [m["headers"]["id"] for m in waiting] == [r.id for r in results[1:]]
    assert not app.broker.space.unacked
    with app.worker(concurrency=2):
        assert [r.get(timeout=10) for r in results] == list(range(5))


def test_warm_stop_returns_eta_messages_at_once(app):
    @app.task
    def later():
        return "later"

    with app.worker(concurrency=1) as worker:
        result = later.apply_async(countdown=3600)
        wait_for(lambda: worker.state.scheduled, message="the ETA task held by the timer")
    (message,) = app.broker.space.peek("celery")
    assert message["headers"]["id"] == result.id
    assert message["headers"]["redelivered"] is True


def test_early_ack_is_at_task_start_and_late_ack_after_the_result(app):
    gated, gate, running = _gate_task(app)

    @app.task(acks_late=True, name="late")
    def late():
        running.set()
        assert gate.wait(20)
        return "late"

    with app.worker(concurrency=1) as worker:
        result = gated.delay(1)
        assert running.wait(10)
        assert not app.broker.space.unacked  # acked as it started
        gate.set()
        result.get(timeout=10)
        gate.clear()
        running.clear()
        result = late.delay()
        assert running.wait(10)
        assert len(app.broker.space.unacked) == 1  # held until the task is done
        gate.set()
        assert result.get(timeout=10) == "late"
        assert worker.drain(10)
    assert not app.broker.space.unacked


def test_a_worker_can_be_started_again_after_stopping(app):
    @app.task
    def one():
        return 1

    worker = app.worker(concurrency=1)
    for _ in range(2):
        with worker:
            assert one.delay().get(timeout=10) == 1
    assert worker.join(0)


def test_drain_waits_for_the_queue_and_the_pool(app):
    done = []

    @app.task
    def work(i):
        done.append(i)

    with app.worker(concurrency=2) as worker:
        for i in range(200):
            work.delay(i)
        assert worker.drain(30)
        assert len(done) == 200


def test_interpreter_exit_never_hangs_on_worker_threads(tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(
        textwrap.dedent("""
        import threading, nbqueue
        app = nbqueue.App("exit")
        started = threading.Event()

        @app.task
        def forever():
            started.set()
            threading.Event().wait()

        worker = app.worker(concurrency=2, shutdown_timeout=0.5).start()
        forever.delay()
        started.wait(10)
        print("leaving", flush=True)
    """)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "leaving" in proc.stdout


def test_start_failure_names_the_step_and_rolls_back(app):
    from nbqueue.bootsteps import Step
    from nbqueue.exceptions import BootstepError

    class Broken(Step):
        requires = ("pool",)

        def start(self, worker):
            raise OSError("disk on fire")

    app.steps["worker"].add(Broken)
    worker = app.worker(concurrency=1)
    with pytest.raises(BootstepError, match="'broken' failed to start: OSError"):
        worker.start()
    states = {r["name"]: r["state"] for r in worker.blueprint.describe()}
    assert states["broken"] == "failed"
    assert states["pool"] == states["hub"] == states["timer"] == "stopped"
    assert worker.status == "stopped"
