"""The worker panel: every bootstep along the dependency graph, live; counts; start/stop.

Steps are placed in columns by dependency depth (a step sits right of what it requires),
one row of columns per blueprint (worker, then the consumer's own). Each step is an
``HTML`` widget whose ``value`` carries ``data-step``/``data-state`` attributes, coloured
by state, with the time its start took; disabled steps are greyed.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets

from ..bootsteps import DISABLED, RUNNING, STARTING, STATE_COLOURS, StepChange, layers
from .throttle import Throttle

__all__ = ["WorkerPanel", "step_html"]


def step_html(row: dict[str, Any], took: float | None) -> str:
    """One step's box: name, state and how long its start took."""
    state = row["state"]
    colour = STATE_COLOURS.get(state, "#ffffff")
    text = "#57606a" if state == DISABLED else "#000"
    if took is not None:
        timing = f" · started in {took * 1000:.0f} ms"
    else:  # the panel came after the start: say since when
        timing = f" · since {time.strftime('%H:%M:%S', time.localtime(row['since']))}"
    tip = html.escape(row.get("error") or f"requires: {', '.join(row['requires']) or '-'}")
    return (
        f'<div class="nbqueue-step" data-step="{html.escape(row["name"])}" '
        f'data-state="{html.escape(state)}" title="{tip}" style="background:{colour};'
        f"color:{text};border:1px solid #57606a;border-radius:6px;padding:2px 8px;"
        f'margin:2px;min-width:110px;font-size:12px"><b>{html.escape(row["name"])}</b><br>'
        f"{html.escape(state)}{timing}</div>"
    )


class WorkerPanel:
    """A live panel for one worker: ``steps`` maps step name → its ``HTML`` widget."""

    def __init__(self, worker: Any, *, rate: float = 20.0) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._starting: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.header = widgets.HTML()
        self.counts = widgets.HTML()
        self.start_button = widgets.Button(description="start", icon="play")
        self.stop_button = widgets.Button(description="stop", icon="stop")
        self.start_button.on_click(lambda _: self._safely(self.worker.start))
        self.stop_button.on_click(lambda _: self._safely(self.worker.stop_soon))
        self.steps: dict[str, widgets.HTML] = {}
        self.graph = widgets.VBox(self._build_graph())
        buttons = widgets.HBox([self.start_button, self.stop_button, self.counts])
        self.widget = widgets.VBox([self.header, buttons, self.graph])
        self._throttle = Throttle(self._redraw, rate=rate, name="nbqueue-panel")
        self._blueprint = worker.blueprint
        self._unlisten = self._blueprint.add_listener(self._on_step)
        self._removers = [lambda: self._unlisten()]
        signals = worker.app.signals
        signals.worker_init.connect(self._on_init)
        self._removers.append(lambda: signals.worker_init.disconnect(self._on_init))
        for signal in (signals.task_prerun, signals.task_postrun, signals.worker_ready):
            signal.connect(self._on_signal)
            self._removers.append(lambda s=signal: s.disconnect(self._on_signal))
        self._throttle.flush()

    def _build_graph(self) -> list[Any]:
        rows = self.worker.blueprint.describe()
        rows_of = {bp: [r for r in rows if r["blueprint"] == bp] for bp in ("worker", "consumer")}
        lines = []
        for blueprint, bp_rows in rows_of.items():
            depth = layers(bp_rows)
            columns: dict[int, list[Any]] = {}
            for row in bp_rows:
                box = self.steps[row["name"]] = widgets.HTML()
                columns.setdefault(depth[row["name"]], []).append(box)
            title = widgets.HTML(f"<b>{blueprint}</b>", layout=widgets.Layout(width="80px"))
            lines.append(
                widgets.HBox([title, *(widgets.VBox(c) for _, c in sorted(columns.items()))])
            )
        return lines

    def _safely(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # a failed start shows in the panel, never in a traceback
            self.header.value = f"<b style='color:#cf222e'>{html.escape(repr(exc))}</b>"

    def _on_step(self, change: StepChange) -> None:
        with self._lock:
            if change.state == STARTING:
                self._starting[change.step] = change.since
            elif change.state == RUNNING and change.step in self._starting:
                self.took[change.step] = change.since - self._starting.pop(change.step)
        self._throttle.poke()

    def _on_signal(self, sender: Any = None, **_: Any) -> None:
        self._throttle.poke()

    def _on_init(self, sender: Any = None, **_: Any) -> None:
        """A restarted worker builds new blueprints: follow them."""
        if sender is self.worker and self.worker.blueprint is not self._blueprint:
            self._unlisten()
            self._blueprint = self.worker.blueprint
            self._unlisten = self._blueprint.add_listener(self._on_step)

    def _redraw(self) -> None:
        worker = self.worker
        for row in worker.blueprint.describe():
            box = self.steps.get(row["name"])
            if box is not None:
                box.value = step_html(row, self.took.get(row["name"]))
        self.header.value = self.header_html()
        self.counts.value = self.counts_text()
        running = worker.status == "running"
        self.start_button.disabled = running
        self.stop_button.disabled = not running

    def header_html(self) -> str:
        worker = self.worker
        options = worker.options
        size = worker.steps["pool"].info().get("max-concurrency", options.concurrency)
        pool = f"pool {html.escape(options.pool)} × {size}"
        if options.autoscale:  # the autoscaler's live bounds where it runs, else the options
            scaler = worker.steps.get("autoscaler")
            bounds = scaler.info() if scaler is not None else {}
            low = bounds.get("min", options.autoscale[1])
            high = bounds.get("max", options.autoscale[0])
            pool += f" (autoscale {low}–{high})"
        return (
            f"<b>nbqueue worker</b> <code>{html.escape(worker.hostname)}</code> "
            f"<b>{html.escape(worker.status)}</b> · {pool} · "
            f"queues {html.escape(', '.join(worker.queues))}"
        )

    def counts_text(self) -> str:
        counts = self.worker.state.snapshot()
        return (
            f"active {counts['active']} · reserved {counts['reserved']} · "
            f"processed {counts['processed']} ({counts['succeeded']} ok, {counts['failed']} failed)"
        )

    def refresh(self) -> None:
        """Redraw now (e.g. right after a stop, so the cell that stopped it shows the end)."""
        self._throttle.flush()

    def states(self) -> dict[str, str]:
        """Step name → state, as the panel shows it now."""
        return {row["name"]: row["state"] for row in self.worker.blueprint.describe()}

    def close(self) -> None:
        for remove in self._removers:
            remove()
        self._throttle.close()

    def __repr__(self) -> str:
        return f"{self.worker!r}\n{self.counts_text()}\n{self.worker.blueprint.text()}"

    def _repr_html_(self) -> str:
        return (
            f"<div>{self.header_html()}<br>{html.escape(self.counts_text())}"
            f"{self.worker.blueprint.html()}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle.update({"text/plain": repr(self), "text/html": self._repr_html_()})
        return bundle
