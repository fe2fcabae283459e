"""Time limits that really work in threads: soft raises inside the task, hard gives the
thread up and replaces it, and what cannot be interrupted is shown, not hidden."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time

import pytest

from nbqueue import states
from nbqueue.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from nbqueue.worker import interrupts
from tests.helpers import wait_for

#: no heartbeat, gossip or mingle: the only timer entries would be time limits
QUIET = {"without_heartbeat": True, "without_gossip": True, "without_mingle": True}


def python_step() -> None:
    """A Python-level call: CPython delivers a pending asynchronous exception here."""


def spin(stop: threading.Event) -> None:
    """Python code that never ends by itself (short C waits between Python steps)."""
    while not stop.wait(0.005):
        python_step()


@pytest.fixture
def never():
    stop = threading.Event()
    yield stop
    stop.set()


def test_soft_limit_raises_inside_the_task_which_can_clean_up(app, never):
    @app.task(soft_time_limit=0.2)
    def careful():
        started = time.monotonic()
        try:
            spin(never)
        except SoftTimeLimitExceeded:
            return ("cleaned up", time.monotonic() - started)

    with app.worker(concurrency=1):
        outcome, elapsed = careful.delay().get(timeout=10)
    assert outcome == "cleaned up"
    assert elapsed >= 0.2


def test_soft_limit_not_caught_fails_the_task(app, never):
    @app.task(soft_time_limit=0.1)
    def careless():
        spin(never)

    with app.worker(concurrency=1):
        result = careless.delay()
        with pytest.raises(SoftTimeLimitExceeded):
            result.get(timeout=10)
    assert result.state == states.FAILURE


def test_hard_limit_is_not_swallowed_by_except_exception_and_the_thread_exits(app, never):
    entered = []

    @app.task(time_limit=0.2)
    def stubborn():
        entered.append(threading.current_thread())
        while True:
            try:  # noqa: SIM105 - careless code; an Interrupt goes through it
                spin(never)
            except Exception:
                pass

    with app.worker(concurrency=1) as worker:
        result = stubborn.delay()
        with pytest.raises(TimeLimitExceeded, match=r"0\.2"):
            result.get(timeout=10)
        (thread,) = entered
        thread.join(10)  # Python code: interrupted at once, so the abandoned thread ends
        assert not thread.is_alive()
        assert worker.steps["pool"].pool.info()["replaced"] == 1


def test_hard_limit_frees_the_slot_of_a_thread_blocked_in_c_which_cannot_be_interrupted(app):
    gate = threading.Event()
    entered = []

    @app.task(time_limit=0.2)
    def blocked():
        entered.append(threading.current_thread())
        gate.wait()  # blocks in one C call: nothing can interrupt it before it returns
        python_step()  # the injected exception is raised by now, at the latest
        return "unreachable"

    @app.task
    def echo(x):
        return x

    with app.worker(concurrency=1) as worker:
        pool = worker.steps["pool"].pool
        result = blocked.delay()
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=10)
        # the pool still has its one thread, and it is a new one: work goes on
        assert echo.delay(42).get(timeout=10) == 42
        (thread,) = entered
        assert len(pool.threads) == 1 and pool.threads[0] is not thread
        assert thread.is_alive()  # still blocked in C, long after its limit
        assert pool.info()["abandoned"] == [thread.name]
        gate.set()
        thread.join(10)
        assert not thread.is_alive()  # the C call returned: the exception ended the thread
        assert worker.drain(10)
    assert result.state == states.FAILURE  # the late exit of the old thread recorded nothing
    assert isinstance(result.result, TimeLimitExceeded)


def test_soft_limit_reaches_a_thread_blocked_in_c_only_when_the_call_returns(app, caplog):
    gate = threading.Event()

    @app.task(soft_time_limit=0.1)
    def blocked():
        gate.wait()
        python_step()
        return "finished"

    level = caplog.at_level(logging.WARNING, logger="nbqueue.worker.limits")
    with level, app.worker(concurrency=1):
        result = blocked.delay()
        wait_for(lambda: "Soft time limit (0.1s) exceeded" in caplog.text)
        assert not result.ready()  # the limit passed, but the task is stuck in C
        gate.set()
        with pytest.raises(SoftTimeLimitExceeded):
            result.get(timeout=10)


def test_limits_per_call_from_the_header_and_from_the_worker(app, never):
    @app.task
    def loop():
        spin(never)

    with app.worker(concurrency=2) as worker:
        by_option = loop.apply_async(time_limit=0.2)
        by_header = loop.apply_async(soft_time_limit=0.2)
        with pytest.raises(TimeLimitExceeded):
            by_option.get(timeout=10)
        with pytest.raises(SoftTimeLimitExceeded):
            by_header.get(timeout=10)
        assert app.backend.get_meta(by_option.id)["status"] == states.FAILURE
        worker.set_time_limit(loop.name, hard=0.2, soft=None)
        with pytest.raises(TimeLimitExceeded):
            loop.delay().get(timeout=10)


def test_the_message_header_wins_and_no_limit_means_no_timer_entry(app):
    @app.task(time_limit=100, soft_time_limit=50)
    def limited():
        return "ok"

    @app.task
    def unlimited():
        return "ok"

    with app.worker(concurrency=1, **QUIET) as worker:
        limits = worker.steps["tasks"].handler.time_limits
        assert unlimited.delay().get(timeout=10) == "ok"
        assert len(worker.steps["timer"].timer) == 0
        assert limits.limits_for(_Run(limited, 7, None)) == (7, 50)
        assert limits.limits_for(_Run(limited, None, None)) == (100, 50)
        assert limits.limits_for(_Run(unlimited, None, None)) == (None, None)
        worker.set_time_limit(limited.name, hard=None, soft=3)
        assert limits.limits_for(_Run(limited, None, None)) == (None, 3)
        app.conf.task_time_limit = 60
        assert limits.limits_for(_Run(unlimited, None, None)) == (60, None)


class _Run:
    """What `TimeLimits.limits_for` reads of a request."""

    def __init__(self, task, hard, soft):
        from nbqueue.protocol import build_task_message

        self.task = task
        self.name = task.name
        self.task_message = build_task_message(
            task.name, "id", time_limit=hard, soft_time_limit=soft
        )


def test_solo_pool_hard_limit_interrupts_the_loop_thread_without_replacing_it(app, never):
    @app.task(time_limit=0.2)
    def loop():
        spin(never)

    @app.task
    def echo(x):
        return x

    with app.worker(pool="solo") as worker:
        result = loop.delay()
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=10)
        assert echo.delay(1).get(timeout=10) == 1
        assert worker.steps["hub"].loop.is_running()


def test_async_task_is_cancelled_at_its_time_limit(app):
    seen = []

    @app.task(soft_time_limit=0.2)
    async def sleepy():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with app.worker(concurrency=1):
        result = sleepy.delay()
        with pytest.raises(SoftTimeLimitExceeded):
            result.get(timeout=10)
        wait_for(lambda: seen == ["cancelled"])


def test_acks_late_timeout_is_requeued_unless_acks_on_timeout(app, never):
    runs = []

    @app.task(acks_late=True, acks_on_timeout=False, time_limit=0.2)
    def again():
        runs.append(1)
        if len(runs) == 1:
            spin(never)
        return len(runs)

    @app.task(acks_late=True, time_limit=0.2)
    def once():
        spin(never)

    with app.worker(concurrency=1) as worker:
        first = again.delay()
        wait_for(
            lambda: app.backend.get_meta(first.id)["status"] == states.SUCCESS,
            message="the timed-out message redelivered and run again",
        )
        assert runs == [1, 1] and first.get(timeout=10) == 2
        with pytest.raises(TimeLimitExceeded):
            once.delay().get(timeout=10)
        assert worker.drain(10)
    assert not app.broker.space.unacked
    assert app.broker.space.sizes().get("celery", 0) == 0


def test_limits_racing_the_end_of_runs_never_leak_into_the_worker(app, caplog):
    """Hundreds of runs ending right around their limits: every one gets exactly one
    outcome, no injected exception escapes into worker code, the pool keeps its size."""

    chatty = logging.getLogger("tests.chatty")

    @app.task(time_limit=0.004, soft_time_limit=0.002)
    def close_call(i):
        deadline = time.perf_counter() + (i % 7) * 0.001  # 0-6 ms of Python code...
        while time.perf_counter() < deadline:
            python_step()
            chatty.error("step %s", i)  # ...much of it inside logging, which holds locks
        return i

    outcomes = []
    app.signals.task_postrun.connect(lambda sender, **kw: outcomes.append(kw["task_id"]))
    with caplog.at_level(logging.ERROR), app.worker(concurrency=4) as worker:
        results = [close_call.delay(i) for i in range(300)]
        for result in results:
            with contextlib.suppress(SoftTimeLimitExceeded, TimeLimitExceeded):
                result.get(timeout=20)
        assert worker.drain(20)
        pool = worker.steps["pool"].pool
        assert len(pool.threads) == 4
        stored = [app.backend.get_meta(r.id)["status"] for r in results]
    assert set(stored) <= {states.SUCCESS, states.FAILURE}
    assert worker.state.processed == 300
    logged = threading.Thread(target=chatty.error, args=("still logging",), daemon=True)
    logged.start()
    logged.join(5)
    assert not logged.is_alive()  # no logging lock was left held by an interrupted task
    assert "crashed outside its task" not in caplog.text
    assert "internal error" not in caplog.text
    assert not app.broker.space.unacked


@pytest.mark.parametrize(
    ("where", "safe"),
    [
        ("sleeping in task code", True),
        ("Event.wait", True),
        ("logging's acquire", False),
        ("Condition.__enter__", False),
    ],
)
def test_safe_points_are_judged_by_the_innermost_frame(where, safe):
    handler = logging.Handler()
    condition = threading.Condition()
    gate = threading.Event()
    done = []

    def nap():
        while not done:
            time.sleep(0.01)

    blockers = {
        "sleeping in task code": nap,
        "Event.wait": gate.wait,
        "logging's acquire": handler.acquire,
        "Condition.__enter__": condition.__enter__,
    }
    handler.acquire()  # held here: the other thread blocks inside logging / threading
    condition.acquire()
    started = threading.Event()

    def blocked():
        started.set()
        blockers[where]()

    thread = threading.Thread(target=blocked, daemon=True)
    thread.start()
    try:
        assert started.wait(5)
        wait_for(lambda: sys._current_frames()[thread.ident].f_code.co_name != "blocked")
        assert interrupts.safe_to_raise(thread.ident) is safe
    finally:
        handler.release()
        condition.release()
        gate.set()
        done.append(True)
        thread.join(5)


def test_an_interruption_swallowed_by_a_finaliser_is_tried_again():
    """An injected exception that surfaces in a weakref/__del__ callback is "unraisable":
    Python drops it. The hook hands it back to the worker, which tries again."""
    import sys
    import types

    from nbqueue.worker import interrupts

    retried = []
    reported = []
    previous = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        me = threading.get_ident()
        # a thread id that does not exist: nothing is really raised anywhere
        interrupts.raise_in_thread(-1, SoftTimeLimitExceeded, on_lost=lambda: None)
        interrupts._lost[me] = (SoftTimeLimitExceeded, lambda: retried.append(me))
        swallowed = types.SimpleNamespace(
            exc_type=SoftTimeLimitExceeded,
            exc_value=SoftTimeLimitExceeded(),
            exc_traceback=None,
            err_msg="Exception ignored in",
            object=None,
        )
        sys.unraisablehook(swallowed)
        other = types.SimpleNamespace(
            exc_type=ValueError,
            exc_value=ValueError("x"),
            exc_traceback=None,
            err_msg=None,
            object=None,
        )
        sys.unraisablehook(other)
    finally:
        interrupts._lost.pop(-1, None)
        sys.unraisablehook = previous
    assert retried == [me]  # ours: handed back for another try
    assert reported == [other]  # anything else still reaches the previous hook
