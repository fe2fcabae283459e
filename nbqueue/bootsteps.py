"""The generic Blueprint/Step engine: dependent steps, started in order, observable.

A `Step` declares what it ``requires`` (step names or classes). A `Blueprint` orders its
steps with a deterministic topological sort, starts them in that order, stops them in
reverse, rolls back the started ones when one fails, and records every state change with
a timestamp. Listeners (the widgets) subscribe to those changes; nothing here knows who
listens. This module is pure: no threads of its own, no I/O.
"""

from __future__ import annotations

import graphlib
import html
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from .exceptions import BootstepError, DependencyError

__all__ = [
    "DISABLED",
    "FAILED",
    "PENDING",
    "RUNNING",
    "STARTING",
    "STATES",
    "STOPPED",
    "STOPPING",
    "Blueprint",
    "Step",
    "StepChange",
    "StepRegistry",
]

logger = logging.getLogger(__name__)

PENDING = "pending"
STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
FAILED = "failed"
DISABLED = "disabled"
STATES = (PENDING, STARTING, RUNNING, STOPPING, STOPPED, FAILED, DISABLED)


class Step:
    """One part of a worker, started after the steps it ``requires``.

    Subclasses override `start` and `stop` (both must return quickly and own whatever
    threads they start), optionally `include` (a step left out shows as ``disabled``) and
    `info` (shown by ``inspect stats`` and the worker panel).
    """

    #: unique name within the worker; defaults to the lower-cased class name
    name: ClassVar[str] = ""
    #: steps that must be running first: names or Step classes
    requires: ClassVar[tuple[str | type[Step], ...]] = ()
    #: a step that starts after every other step of its blueprint
    last: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or not cls.__dict__["name"]:
            cls.name = cls.__name__.lower()

    def __init__(self, parent: Any, **options: Any) -> None:
        self.parent = parent
        self.options = options

    @property
    def label(self) -> str:
        return type(self).__name__

    def include(self, parent: Any) -> bool:
        """Whether this step takes part; ``False`` shows it as disabled."""
        return True

    def start(self, parent: Any) -> None:
        """Start the step's work; return quickly."""

    def stop(self, parent: Any) -> None:
        """Stop the step's work; idempotent."""

    def info(self) -> dict[str, Any]:
        """What this step reports to ``inspect stats`` and the widgets."""
        return {}

    def __repr__(self) -> str:
        return f"<step {self.name}>"


def _dep_name(dep: str | type[Step]) -> str:
    return dep if isinstance(dep, str) else dep.name


@dataclass(frozen=True)
class StepChange:
    """A state change of one step, as delivered to listeners."""

    blueprint: str
    step: str
    state: str
    previous: str
    since: float
    error: str | None = None


Listener = Callable[[StepChange], None]


class StepRegistry:
    """``app.steps["worker"]``: extra step classes (with options) for one blueprint."""

    def __init__(self) -> None:
        self._steps: dict[type[Step], dict[str, Any]] = {}

    def add(self, step: type[Step], **options: Any) -> type[Step]:
        if not (isinstance(step, type) and issubclass(step, Step)):
            raise TypeError(f"{step!r} is not a subclass of nbqueue.bootsteps.Step")
        self._steps[step] = options
        return step

    def discard(self, step: type[Step]) -> None:
        self._steps.pop(step, None)

    def __iter__(self) -> Iterator[tuple[type[Step], dict[str, Any]]]:
        return iter(list(self._steps.items()))

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, step: object) -> bool:
        return step in self._steps


class _Record:
    __slots__ = ("error", "since", "state")

    def __init__(self) -> None:
        self.state = PENDING
        self.since = time.time()
        self.error: str | None = None


class Blueprint:
    """An ordered set of steps for one parent (a worker or its consumer).

    ``Blueprint("worker", [Timer, Hub, Pool, Consumer])`` orders the classes by their
    dependencies; `apply` instantiates them for a parent; `start`/`stop` drive them.
    """

    def __init__(
        self,
        name: str,
        steps: Iterable[type[Step] | tuple[type[Step], dict[str, Any]]],
        *,
        on_change: Listener | None = None,
    ) -> None:
        self.name = name
        classes: dict[str, tuple[type[Step], dict[str, Any]]] = {}
        for entry in steps:
            cls, options = entry if isinstance(entry, tuple) else (entry, {})
            if cls.name in classes and classes[cls.name][0] is not cls:
                raise DependencyError(
                    f"{name} blueprint: two steps are named {cls.name!r} "
                    f"({classes[cls.name][0].__qualname__} and {cls.__qualname__})"
                )
            classes[cls.name] = (cls, options)
        self._classes = classes
        self.order: list[str] = self._sort(classes)
        self.steps: dict[str, Step] = {}
        self._records = {step: _Record() for step in self.order}
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._lock = threading.RLock()
        self.started: list[str] = []

    # ordering ------------------------------------------------------------------------
    def _sort(self, classes: dict[str, tuple[type[Step], dict[str, Any]]]) -> list[str]:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        last = [n for n, (cls, _) in classes.items() if cls.last]
        if len(last) > 1:
            raise DependencyError(f"{self.name} blueprint: several steps are last: {last}")
        for step_name, (cls, _) in classes.items():
            deps = [_dep_name(d) for d in cls.requires]
            unknown = [d for d in deps if d not in classes]
            if unknown:
                raise DependencyError(
                    f"{self.name} blueprint: step {step_name!r} requires unknown "
                    f"step(s) {unknown}; known steps: {list(classes)}"
                )
            if cls.last:
                deps = [n for n in classes if n != step_name]
            sorter.add(step_name, *deps)
        try:
            return list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise DependencyError(
                f"{self.name} blueprint: steps require each other: {cycle}"
            ) from None

    def requires(self, step: str) -> list[str]:
        """Names of the steps `step` requires directly."""
        cls = self._classes[step][0]
        if cls.last:
            return [n for n in self.order if n != step]
        return [_dep_name(d) for d in cls.requires]

    def dependents(self, step: str) -> list[str]:
        """Steps that require `step`, directly or not, in start order."""
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name in self.order:
                if name not in found and any(d == step or d in found for d in self.requires(name)):
                    found.add(name)
                    changed = True
        return [n for n in self.order if n in found]

    # lifecycle -----------------------------------------------------------------------
    def apply(self, parent: Any) -> Blueprint:
        """Instantiate every step for `parent`; a step whose `include` is false is disabled."""
        for step_name in self.order:
            cls, options = self._classes[step_name]
            try:
                step = cls(parent, **options)
            except Exception as exc:
                self._set(step_name, FAILED, exc)
                raise BootstepError(
                    f"{self.name} step {step_name!r} could not be created: {exc!r}"
                ) from exc
            self.steps[step_name] = step
            if not step.include(parent):
                self._set(step_name, DISABLED)
        return self

    def start(self, parent: Any) -> None:
        """Start the included steps in order; on a failure stop the started ones in reverse."""
        for step_name in self.order:
            if self.state_of(step_name) == DISABLED:
                continue
            self._start_one(parent, step_name)

    def _start_one(self, parent: Any, step_name: str) -> None:
        step = self.steps[step_name]
        self._set(step_name, STARTING)
        try:
            step.start(parent)
        except Exception as exc:
            self._set(step_name, FAILED, exc)
            logger.error("%s step %r failed to start: %r", self.name, step_name, exc)
            self.stop(parent)
            if isinstance(exc, BootstepError):
                raise BootstepError(f"{self.name} step {step_name!r} failed: {exc}") from exc
            raise BootstepError(f"{self.name} step {step_name!r} failed to start: {exc!r}") from exc
        with self._lock:
            self.started.append(step_name)
        self._set(step_name, RUNNING)

    def stop(self, parent: Any) -> None:
        """Stop the started steps in reverse order; errors are logged, not raised."""
        while True:
            with self._lock:
                if not self.started:
                    return
                step_name = self.started.pop()
            self._stop_one(parent, step_name)

    def _stop_one(self, parent: Any, step_name: str) -> None:
        self._set(step_name, STOPPING)
        try:
            self.steps[step_name].stop(parent)
        except Exception as exc:
            logger.exception("%s step %r failed to stop", self.name, step_name)
            self._set(step_name, FAILED, exc)
        else:
            self._set(step_name, STOPPED)

    def stop_step(self, parent: Any, step_name: str) -> list[str]:
        """Stop `step_name` and the started steps that depend on it (in reverse order);
        returns their names in start order."""
        self._known(step_name)
        affected = [n for n in [step_name, *self.dependents(step_name)] if n in self.started]
        for name in reversed(affected):
            with self._lock:
                self.started.remove(name)
            self._stop_one(parent, name)
        return affected

    def start_step(self, parent: Any, step_name: str) -> list[str]:
        """Start a stopped `step_name` again (its requirements must run), then its stopped
        dependents whose requirements run; returns the names started."""
        self._known(step_name)
        state = self.state_of(step_name)
        if state == RUNNING:
            return []
        if state != STOPPED:
            raise BootstepError(
                f"{self.name} step {step_name!r} is {state}: only a stopped step starts again"
            )
        missing = [d for d in self.requires(step_name) if d not in self.started]
        if missing:
            raise BootstepError(f"{self.name} step {step_name!r} needs {missing} running first")
        started = []
        for name in [step_name, *self.dependents(step_name)]:
            ready = all(d in self.started for d in self.requires(name))
            if self.state_of(name) == STOPPED and ready:
                self._start_one(parent, name)
                started.append(name)
        return started

    def restart(self, parent: Any, step_name: str) -> list[str]:
        """Stop `step_name` and everything that depends on it, then start them again."""
        affected = self.stop_step(parent, step_name)
        for name in affected:
            self._start_one(parent, name)
        return affected

    def _known(self, step_name: str) -> None:
        if step_name not in self._records:
            raise BootstepError(
                f"{self.name} blueprint has no step {step_name!r}; its steps: {self.order}"
            )

    # state ---------------------------------------------------------------------------
    def _set(self, step_name: str, state: str, error: BaseException | None = None) -> None:
        record = self._records[step_name]
        with self._lock:
            previous = record.state
            record.state = state
            record.since = time.time()
            record.error = None if error is None else f"{type(error).__name__}: {error}"
            change = StepChange(self.name, step_name, state, previous, record.since, record.error)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                logger.exception("bootstep listener %r failed", listener)

    def state_of(self, step_name: str) -> str:
        return self._records[step_name].state

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(change)` on every state change; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def describe(self) -> list[dict[str, Any]]:
        """One dict per step, in start order."""
        rows = []
        for step_name in self.order:
            record = self._records[step_name]
            row: dict[str, Any] = {
                "name": step_name,
                "blueprint": self.name,
                "requires": self.requires(step_name),
                "state": record.state,
                "since": record.since,
            }
            if record.error is not None:
                row["error"] = record.error
            rows.append(row)
        return rows

    def __repr__(self) -> str:
        return f"<Blueprint {self.name}: {', '.join(self.order)}>"


# rendering, shared by the worker's combined view ------------------------------------------

STATE_COLOURS = {
    PENDING: "#d0d7de",
    STARTING: "#f2cc60",
    RUNNING: "#2da44e",
    STOPPING: "#e3b341",
    STOPPED: "#8c959f",
    FAILED: "#cf222e",
    DISABLED: "#eaeef2",
}


def render_text(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of steps."""
    lines = [f"{'step':<14} {'blueprint':<9} {'state':<9} requires"]
    for row in rows:
        requires = ", ".join(row["requires"]) or "-"
        line = f"{row['name']:<14} {row['blueprint']:<9} {row['state']:<9} {requires}"
        if row.get("error"):
            line += f"  !! {row['error']}"
        lines.append(line)
    return "\n".join(lines)


def render_dot(rows: list[dict[str, Any]]) -> str:
    """Graphviz DOT: an edge from each step to the steps it requires."""
    out = ["digraph bootsteps {", "  rankdir=LR;", "  node [shape=box, style=filled];"]
    for row in rows:
        colour = STATE_COLOURS.get(row["state"], "#ffffff")
        out.append(
            f'  "{row["name"]}" [label="{row["name"]}\\n{row["state"]}", fillcolor="{colour}"];'
        )
    for row in rows:
        out.extend(f'  "{dep}" -> "{row["name"]}";' for dep in row["requires"])
    out.append("}")
    return "\n".join(out)


def layers(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Column of each step: one more than the deepest step it requires."""
    depth: dict[str, int] = {}
    for row in rows:  # rows come in start order, so requirements come first
        depth[row["name"]] = 1 + max((depth.get(d, 0) for d in row["requires"]), default=-1)
    return depth


def render_html(rows: list[dict[str, Any]], *, title: str = "bootsteps") -> str:
    """A self-contained SVG of the dependency graph, one box per step, coloured by state."""
    depth = layers(rows)
    columns: dict[int, list[str]] = {}
    for row in rows:
        columns.setdefault(depth[row["name"]], []).append(row["name"])
    box_w, box_h, gap_x, gap_y = 118, 40, 36, 14
    pos = {
        name: (10 + col * (box_w + gap_x), 30 + i * (box_h + gap_y))
        for col, names in columns.items()
        for i, name in enumerate(names)
    }
    width = 20 + (max(columns, default=0) + 1) * (box_w + gap_x)
    height = 40 + max((len(v) for v in columns.values()), default=1) * (box_h + gap_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12"><title>{html.escape(title)}</title>'
    ]
    for row in rows:
        x2, y2 = pos[row["name"]]
        for dep in row["requires"]:
            if dep in pos:
                x1, y1 = pos[dep]
                parts.append(
                    f'<line x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" '
                    f'y2="{y2 + box_h / 2}" stroke="#8c959f"/>'
                )
    for row in rows:
        x, y = pos[row["name"]]
        colour = STATE_COLOURS.get(row["state"], "#ffffff")
        text_colour = "#57606a" if row["state"] == DISABLED else "#000"
        tip = html.escape(row.get("error") or row["state"])
        parts.append(
            f'<g><title>{tip}</title><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" '
            f'rx="6" fill="{colour}" stroke="#57606a"/>'
            f'<text x="{x + 8}" y="{y + 16}" fill="{text_colour}">{html.escape(row["name"])}</text>'
            f'<text x="{x + 8}" y="{y + 32}" fill="{text_colour}" font-size="10">'
            f"{html.escape(row['blueprint'])} · {html.escape(row['state'])}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
