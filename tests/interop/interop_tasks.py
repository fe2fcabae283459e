"""Task functions registered under the same names in a Celery app and an nbqueue app."""

from __future__ import annotations

import threading

#: per-test gates, keyed by the test's own key (opened by the test)
GATES: dict[str, threading.Event] = {}


def add(x: int, y: int) -> int:
    return x + y


def gated_add(key: str, x: int, y: int) -> int:
    """``add`` that first waits for the test to open its gate (to choose who joins last)."""
    if not GATES[key].wait(30):
        raise RuntimeError("gate never opened")
    return x + y


def tsum(values: list[int]) -> int:
    return sum(values)


NAMES = {"interop.add": add, "interop.gated_add": gated_add, "interop.tsum": tsum}
