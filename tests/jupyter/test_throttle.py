"""The throttle: bursts fold into few redraws, and the last change is always drawn."""

from __future__ import annotations

import threading

from nbqueue.jupyter.throttle import Throttle
from tests.helpers import wait_for


def test_a_burst_of_pokes_becomes_few_redraws_ending_on_the_last_value() -> None:
    value = {"now": 0}
    drawn: list[int] = []
    throttle = Throttle(lambda: drawn.append(value["now"]), rate=20.0, name="nbqueue-test")
    try:
        for i in range(1, 5001):
            value["now"] = i
            throttle.poke()
        wait_for(lambda: drawn and drawn[-1] == 5000, message="the last value drawn")
        assert len(drawn) < 50  # 5,000 pokes: the first at once, the rest folded
    finally:
        throttle.close()


def test_pokes_from_many_threads_keep_the_rate_and_deliver_the_end() -> None:
    counter = {"n": 0}
    lock = threading.Lock()
    drawn: list[int] = []
    throttle = Throttle(lambda: drawn.append(counter["n"]), rate=20.0, name="nbqueue-test")

    def work() -> None:
        for _ in range(2000):
            with lock:
                counter["n"] += 1
            throttle.poke()

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        wait_for(lambda: drawn and drawn[-1] == 8000, message="the final count drawn")
    finally:
        throttle.close()


def test_a_failing_redraw_is_logged_and_the_next_one_still_runs(caplog) -> None:
    calls: list[int] = []

    def redraw() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("front end gone")

    throttle = Throttle(redraw, rate=1000.0, name="nbqueue-test")
    try:
        throttle.flush()
        throttle.flush()
        assert len(calls) == 2
        assert "redraw failed" in caplog.text
    finally:
        throttle.close()


def test_close_cancels_a_pending_redraw() -> None:
    drawn: list[int] = []
    throttle = Throttle(lambda: drawn.append(1), rate=0.5, name="nbqueue-test")
    throttle.poke()  # drawn at once
    throttle.poke()  # due in two seconds
    throttle.close()
    assert drawn == [1]
