"""Importable task functions for workers on Redis-like brokers (they travel as plain JSON).

Tasks defined inside a test are closures and would travel as cloudpickle, which cannot
carry the events tests synchronise on; these look their events up by a key instead.
"""

from __future__ import annotations

import threading
from typing import Any

#: per-test events, keyed by the test's own key (created and removed by the test)
GATES: dict[str, threading.Event] = {}
STARTED: dict[str, threading.Event] = {}


def add(x: int, y: int) -> int:
    return x + y


def gated(key: str, i: int) -> int:
    STARTED[key].set()
    if not GATES[key].wait(20):
        raise RuntimeError("gate never opened")
    return i


def tsum(values: list[int]) -> int:
    return sum(values)


def register(app: Any) -> dict[str, Any]:
    """These functions as tasks of `app`, under fixed names."""
    return {
        "add": app.task(name="redis_tasks.add")(add),
        "gated": app.task(name="redis_tasks.gated")(gated),
        "tsum": app.task(name="redis_tasks.tsum")(tsum),
    }
