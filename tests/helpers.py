"""Small waiting helpers: every wait has a timeout and wakes on a condition where one exists."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    condition: threading.Condition | None = None,
    message: str = "",
) -> Any:
    """Return `predicate()` once truthy; fail after `timeout` seconds.

    Between checks it waits on `condition` (woken by the code under test) or, where the
    code offers no condition, for a short interval.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        if condition is not None:
            with condition:
                condition.wait(min(remaining, 0.05))
        else:
            pause.wait(min(remaining, 0.01))
