"""The process pool: task functions run in spawned children; the parent keeps the rest."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from nbqueue import states
from nbqueue.exceptions import (
    SecurityError,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from nbqueue.worker.child import decode, encode
from tests.helpers import wait_for


def test_runs_functions_in_children_with_the_parent_storing_everything(app):
    @app.task
    def where(x):
        return x * x, os.getpid()

    @app.task(bind=True)
    def reports(self, total):
        for i in range(total):
            self.progress(i + 1, total)
        return self.request.id, self.request.retries, list(self.request.args)

    @app.task
    async def awaits(x):
        import asyncio

        await asyncio.sleep(0)
        return x + 1

    @app.task
    def fails():
        raise KeyError("missing in the child")

    @app.task
    def unpicklable():
        return threading.Lock()

    lock = threading.Lock()

    @app.task
    def cannot_travel():
        return lock.locked()

    seen = []
    app.backend.add_listener(lambda task_id, meta: seen.append((task_id, meta["status"])))
    with app.worker(pool="processes", concurrency=1) as worker:
        info = worker.statistics()["pool"]
        assert info["implementation"] == "nbqueue.worker.processes:ProcessPool"
        (child,) = info["processes"]
        assert child != os.getpid()
        assert list(where.delay(7).get(timeout=30)) == [49, child]

        result = reports.delay(3)
        assert list(result.get(timeout=30)) == [result.id, 0, [3]]
        assert [s for t, s in seen if t == result.id] == ["PROGRESS"] * 3 + ["SUCCESS"]

        assert awaits.delay(41).get(timeout=30) == 42

        failed = fails.delay()
        with pytest.raises(KeyError, match="missing in the child"):
            failed.get(timeout=30)
        child_part = failed.traceback.split("direct cause")[0]
        assert "RemoteTraceback" in child_part and ", in fails" in child_part

        with pytest.raises(TypeError, match="cannot be sent back from its process"):
            unpicklable.delay().get(timeout=30)
        with pytest.raises(TypeError, match="lock"):
            cannot_travel.delay().get(timeout=30)
        assert worker.statistics()["pool"]["processes"] == [child]  # still the same child


def test_what_a_child_prints_is_written_by_the_task_thread_in_the_parent(app, capsys):
    @app.task
    def chatty(word):
        import logging
        import sys

        print("printed", word)
        print("partial line", end="")  # flushed before the outcome
        logging.getLogger("child").warning("logged %s", word)  # logging's last resort
        sys.stderr.write("to stderr\n")
        return os.getpid()

    written = []
    app.signals.task_postrun.connect(lambda **kw: written.append(capsys.readouterr()))
    with app.worker(pool="processes", concurrency=1):
        child = chatty.delay("hello").get(timeout=60)
    (out,) = written  # everything was in the parent's streams before the task's postrun
    assert child != os.getpid()
    assert out.out == "printed hello\npartial line"
    assert "logged hello\n" in out.err
    assert "to stderr\n" in out.err


def test_retry_from_a_child_is_sent_by_the_parent(app):
    @app.task(bind=True, max_retries=2, default_retry_delay=0)
    def flaky(self):
        if self.request.retries < 2:
            raise self.retry(exc=ConnectionError("not yet"))
        return f"done after {self.request.retries} retries"

    with app.worker(pool="processes", concurrency=1):
        assert flaky.delay().get(timeout=30) == "done after 2 retries"


def test_a_crashed_child_fails_its_task_and_is_replaced(app):
    @app.task
    def exits(code):
        os._exit(code)

    @app.task
    def killed():
        os.kill(os.getpid(), signal.SIGKILL)

    @app.task
    def pid():
        return os.getpid()

    with app.worker(pool="processes", concurrency=1) as worker:
        first = pid.delay().get(timeout=30)
        with pytest.raises(WorkerLostError, match="exited prematurely: 3 Job: 2"):
            exits.delay(3).get(timeout=30)
        with pytest.raises(WorkerLostError, match=r"signal 9 \(SIGKILL\)"):
            killed.delay().get(timeout=30)
        second = pid.delay().get(timeout=30)
        assert second != first
        assert worker.statistics()["pool"]["processes"] == [second]


def test_reject_on_worker_lost_requeues_a_late_acked_task_whose_child_died(app, tmp_path):
    marker = tmp_path / "died-once"

    @app.task(acks_late=True, reject_on_worker_lost=True, bind=True)
    def dies_once(self, path):
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.request.delivery_info.get("redelivered")

    @app.task(acks_late=True)  # without the option: the loss is a failure, not a requeue
    def dies(path):
        os.kill(os.getpid(), signal.SIGKILL)

    with app.worker(pool="processes", concurrency=1):
        assert dies_once.delay(str(marker)).get(timeout=60) is True
        with pytest.raises(WorkerLostError):
            dies.delay(str(marker)).get(timeout=60)
    assert marker.exists()


def test_time_limits_soft_raises_in_the_task_hard_kills_the_child(app):
    @app.task(soft_time_limit=0.3, time_limit=30)
    def tidy():
        try:
            while True:
                pass
        except SoftTimeLimitExceeded:
            return "cleaned up"

    @app.task(time_limit=0.5)
    def spins():
        while True:
            pass

    @app.task
    def pid():
        return os.getpid()

    with app.worker(pool="processes", concurrency=1):
        before = pid.delay().get(timeout=30)
        assert tidy.delay().get(timeout=30) == "cleaned up"
        result = spins.delay()
        with pytest.raises(TimeLimitExceeded, match=r"hard time limit of 0\.5 s"):
            result.get(timeout=30)
        assert result.state == states.FAILURE
        after = pid.delay().get(timeout=30)
        assert after != before
        limited = spins.apply_async(time_limit=0.2)  # the message's limit wins
        with pytest.raises(TimeLimitExceeded, match=r"0\.2 s"):
            limited.get(timeout=30)


def test_terminate_job_kills_the_running_task_only(app):
    @app.task
    def forever():
        while True:
            pass

    @app.task
    def echo(x):
        return x

    with app.worker(pool="processes", concurrency=1) as worker:
        pool = worker.steps["pool"].pool
        result = forever.delay()
        wait_for(lambda: result.id in worker.state.active, message="the task running")
        (request,) = worker.state.active.values()
        assert pool.terminate_job(request, "SIGTERM") is True
        with pytest.raises(TaskRevokedError, match="terminated by SIGTERM"):
            result.get(timeout=30)
        assert pool.terminate_job(request) is False  # no longer running
        assert echo.delay("next").get(timeout=30) == "next"


def test_a_stop_kills_children_still_busy_after_the_shutdown_timeout(app):
    @app.task
    def forever():
        while True:
            pass

    worker = app.worker(pool="processes", concurrency=1, shutdown_timeout=0.5).start()
    pool = worker.steps["pool"].pool
    (child,) = pool.processes
    result = forever.delay()
    wait_for(lambda: result.id in worker.state.active, message="the task running")
    worker.stop()
    assert pool.processes == [] and pool.threads == []
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    with pytest.raises(WorkerLostError):
        result.get(timeout=10)


def test_autoscaler_grows_and_shrinks_the_children(app):
    with app.worker(pool="processes", autoscale=(2, 1)) as worker:
        pool = worker.steps["pool"].pool
        assert worker.set_autoscale(2, 2) == (2, 2)
        wait_for(lambda: len(pool.processes) == 2, timeout=60, message="a second child")
        assert worker.set_autoscale(2, 1) == (2, 1)
        worker.steps["autoscaler"].keepalive = 0
        worker.steps["autoscaler"].tick()
        wait_for(lambda: len(pool.processes) == 1, timeout=30, message="back to one child")


def test_frames_signed_with_another_key_are_refused_before_unpickling():
    frame = encode(("run", 1), b"k" * 32)
    assert decode(frame, b"k" * 32) == ("run", 1)
    with pytest.raises(SecurityError):
        decode(frame, b"x" * 32)


def test_revoke_with_terminate_signals_the_child_and_stores_revoked(app):
    @app.task
    def forever():
        while True:
            pass

    with app.worker(pool="processes", concurrency=1) as worker:
        result = forever.delay()
        wait_for(lambda: result.id in worker.state.active, message="the task running")
        assert worker.revoke(result.id, terminate=True, signal="SIGKILL") == [result.id]
        with pytest.raises(TaskRevokedError, match="terminated by SIGKILL"):
            result.get(timeout=30)
        assert result.state == "REVOKED"
