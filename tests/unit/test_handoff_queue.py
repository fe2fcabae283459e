"""The pool's queue: items in order, handed to the thread that began waiting last."""

from __future__ import annotations

import queue
import threading

import pytest

from nbqueue.worker.pools import HandoffQueue
from tests.helpers import wait_for


def test_items_come_out_in_the_order_they_went_in() -> None:
    q = HandoffQueue()
    for i in range(5):
        q.put(i)
    assert [q.get() for _ in range(3)] == [0, 1, 2]
    assert q.get_nowait() == 3
    assert q.get_nowait() == 4
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_an_item_goes_to_the_thread_that_began_waiting_last() -> None:
    q = HandoffQueue()
    got: dict[str, object] = {}

    def take(name: str) -> None:
        got[name] = q.get()

    first = threading.Thread(target=take, args=("first",))
    first.start()
    wait_for(lambda: len(q._waiting) == 1, timeout=10, message="first waits")
    second = threading.Thread(target=take, args=("second",))
    second.start()
    wait_for(lambda: len(q._waiting) == 2, timeout=10, message="second waits")
    q.put("a")
    second.join(10)
    assert got == {"second": "a"}  # the first thread was not woken at all
    assert first.is_alive()
    q.put("b")
    first.join(10)
    assert got == {"second": "a", "first": "b"}


def test_many_producers_and_consumers_lose_nothing() -> None:
    q = HandoffQueue()
    taken: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while (item := q.get()) is not None:
            with lock:
                taken.append(item)

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for thread in consumers:
        thread.start()
    producers = [
        threading.Thread(target=lambda n=n: [q.put(n * 1000 + i) for i in range(500)])
        for n in range(3)
    ]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(30)
    for _ in consumers:
        q.put(None)
    for thread in consumers:
        thread.join(30)
    assert sorted(taken) == sorted(n * 1000 + i for n in range(3) for i in range(500))
