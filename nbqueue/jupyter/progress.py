"""The result-progress widget: one task (``PROGRESS`` meta), a group, or a chord.

The model is `nbqueue.progress.Progress` (told of every stored state by the backend);
this module only draws it, through a `Throttle`, so a 10,000-task batch costs the front
end at most ~20 redraws a second and the last redraw shows the final count.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets

from ..progress import Progress, Snapshot
from ..result import ResultBase
from .throttle import Throttle

__all__ = ["ProgressView", "describe", "show"]

_BAR_STYLES = {"ok": "success", "failed": "danger", "running": "info"}


def describe(snap: Snapshot) -> str:
    """One line of text: ``12/500 · 12 ok · 0 failed · 1.3 s · STARTED``."""
    phase = f" · chord {snap.phase}" if snap.phase != "tasks" else ""
    return (
        f"{snap.done:g}/{snap.total:g} · {snap.succeeded} ok · {snap.failed} failed · "
        f"{snap.elapsed:.1f} s · {snap.state}{phase}"
    )


def _outcome(snap: Snapshot) -> str:
    if snap.failed:
        return "failed"
    return "ok" if snap.finished and snap.phase != "header" else "running"


class ProgressView:
    """A live progress bar for `result`, with text and HTML fallbacks.

    ``bar`` (``FloatProgress``: ``value``/``max``) and ``label`` (``HTML``) are the
    widgets; they stop changing once the result is ready.
    """

    def __init__(self, result: ResultBase, *, description: str = "", rate: float = 20.0) -> None:
        self.result = result
        self.bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, description=description, bar_style="info"
        )
        self.label = widgets.HTML()
        self.widget = widgets.HBox([self.bar, self.label])
        self.finished = False
        self._done = threading.Event()
        self._throttle = Throttle(self._redraw, rate=rate, name="nbqueue-progress")
        self.model = Progress(result)
        self.model.on_change = self._throttle.poke  # after `model` exists: redraws read it
        self._throttle.flush()

    def _redraw(self) -> None:
        snap = self.model.snapshot()
        with self.bar.hold_sync():
            self.bar.max = max(float(snap.total), 1e-9)
            self.bar.value = float(snap.done)
            self.bar.bar_style = _BAR_STYLES[_outcome(snap)]
        self.label.value = html.escape(describe(snap))
        if snap.finished and snap.phase != "header" and not self.finished:
            self.finished = True
            self.model.close()
            self._throttle.close()
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the finished result is drawn; False if `timeout` passed first.

        Waits in short slices so a kernel interrupt (a signal another thread may have
        received) stops the wait.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._done.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    def snapshot(self) -> Snapshot:
        return self.model.snapshot()

    def close(self) -> None:
        """Stop following the result (the widgets keep their last value)."""
        self.model.close()
        self._throttle.close()

    # fallbacks for front ends without the widget manager -----------------------------------
    def __repr__(self) -> str:
        return f"<ProgressView {describe(self.snapshot())}>"

    def _repr_html_(self) -> str:
        snap = self.snapshot()
        percent = 100.0 * snap.done / snap.total if snap.total else 0.0
        return (
            f'<div class="nbqueue-progress"><progress value="{snap.done:g}" '
            f'max="{snap.total:g}"></progress> {percent:.0f}% '
            f"{html.escape(describe(snap))}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self)
        bundle["text/html"] = self._repr_html_()
        return bundle


def show(result: ResultBase) -> None:
    """Display a live progress bar for `result` under the running cell."""
    from IPython.display import display

    display(ProgressView(result))
