"""Fixtures for the Jupyter layer: an in-process IPython shell, and a widget-message recorder."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest


class MessageLog:
    """Every widget comm message sent, by model id, with its time (``time.monotonic``)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def record(self, model_id: str) -> None:
        with self._lock:
            self.times[model_id].append(time.monotonic())

    def peak_rate(self, model_id: str, window: float = 1.0) -> int:
        """Most messages this model sent within any `window` seconds."""
        stamps = sorted(self.times.get(model_id, ()))
        best, start = 0, 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] > window:
                start += 1
            best = max(best, end - start + 1)
        return best


@pytest.fixture
def widget_messages(monkeypatch: pytest.MonkeyPatch) -> MessageLog:
    """Record every message a widget sends to the front end."""
    import ipywidgets

    log = MessageLog()
    original = ipywidgets.Widget._send

    def send(self: Any, msg: Any, buffers: Any = None) -> None:
        log.record(self.model_id)
        original(self, msg, buffers)

    monkeypatch.setattr(ipywidgets.Widget, "_send", send)
    return log


@pytest.fixture
def shell() -> Iterator[Any]:
    """An in-process IPython shell with ``%load_ext nbqueue`` run, torn down after the test."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "nbqueue")
    try:
        yield ip
    finally:
        import nbqueue

        for value in list(ip.user_ns.values()):
            if isinstance(value, nbqueue.App):
                value.close()
        ip.run_line_magic("unload_ext", "nbqueue")
        ip.reset(new_session=False)
