"""The worker panel, through its widgets' traits."""

from __future__ import annotations

import re

import nbqueue
from nbqueue.bootsteps import Step, layers
from nbqueue.jupyter.panel import WorkerPanel
from tests.helpers import wait_for


def _state(panel: WorkerPanel, step: str) -> str:
    match = re.search(r'data-state="(\w+)"', panel.steps[step].value)
    assert match, panel.steps[step].value
    return match.group(1)


class Sidecar(Step):
    """A user step that stays out (disabled)."""

    requires = ("tasks",)

    def include(self, parent) -> bool:
        return False


class Probe(Step):
    """A user step that runs."""

    requires = ("pool",)


def test_every_step_follows_the_worker_from_start_to_stop(app) -> None:
    app.steps["consumer"].add(Sidecar)
    app.steps["worker"].add(Probe)
    worker = app.worker(concurrency=2)
    panel = WorkerPanel(worker)
    try:
        names = [row["name"] for row in worker.blueprint.describe()]
        assert set(panel.steps) == set(names)
        assert {"timer", "hub", "pool", "consumer", "connection", "tasks"} <= set(names)
        assert _state(panel, "sidecar") == "disabled"
        worker.start()
        disabled = {r["name"] for r in worker.blueprint.describe() if r["state"] == "disabled"}
        assert "sidecar" in disabled and "probe" not in disabled
        running = [n for n in names if n not in disabled]
        wait_for(lambda: all(_state(panel, n) == "running" for n in running), message="running")
        assert _state(panel, "sidecar") == "disabled"
        assert "#eaeef2" in panel.steps["sidecar"].value  # greyed
        assert re.search(r"started in \d+ ms</div>", panel.steps["pool"].value)  # its start took
        assert panel.stop_button.disabled is False and panel.start_button.disabled is True
        assert "pool threads × 2" in panel.header.value
        worker.stop()
        wait_for(lambda: all(_state(panel, n) == "stopped" for n in running), message="stopped")
    finally:
        worker.stop()
        panel.close()


def test_steps_are_laid_out_by_dependency_depth(app) -> None:
    worker = app.worker()
    panel = WorkerPanel(worker)
    try:
        rows = worker.blueprint.describe()
        for line, blueprint in zip(panel.graph.children, ("worker", "consumer"), strict=True):
            bp_rows = [r for r in rows if r["blueprint"] == blueprint]
            depth = layers(bp_rows)
            columns = [[_name(c.value) for c in column.children] for column in line.children[1:]]
            assert sorted(n for column in columns for n in column) == sorted(depth)
            for column_index, column in enumerate(columns):
                assert {depth[name] for name in column} == {column_index}
            for row in bp_rows:  # what a step requires sits in a column to its left
                assert all(depth[dep] < depth[row["name"]] for dep in row["requires"])
        first_columns = [_name(c.value) for c in panel.graph.children[0].children[1].children]
        assert "timer" in first_columns
    finally:
        panel.close()


def _name(value: str) -> str:
    return re.search(r'data-step="(\w+)"', value).group(1)


def test_counts_and_buttons(app) -> None:
    @app.task(name="inc")
    def inc(x):
        return x + 1

    worker = app.worker(concurrency=1)
    panel = WorkerPanel(worker)
    try:
        panel.start_button.click()
        assert worker.status == "running"
        nbqueue.group(inc.s(i) for i in range(20)).apply_async().get(timeout=30)
        wait_for(lambda: "processed 20 (20 ok" in panel.counts.value, message="counts")
        panel.stop_button.click()  # stops from its own thread: never blocks the kernel
        assert worker.join(30)
        wait_for(lambda: panel.start_button.disabled is False, message="start enabled")
        panel.start_button.click()  # a restarted worker has new blueprints: still followed
        wait_for(lambda: _state(panel, "tasks") == "running", message="running again")
    finally:
        worker.stop()
        panel.close()


def test_text_and_html_fallbacks(app) -> None:
    worker = app.worker()
    panel = WorkerPanel(worker)
    try:
        bundle = panel._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert "timer" in bundle["text/plain"] and "pending" in bundle["text/plain"]
        assert "<svg" in bundle["text/html"]
    finally:
        panel.close()


def test_the_header_shows_pool_size_and_autoscale_bounds(app) -> None:
    worker = app.worker(autoscale=(6, 2))
    panel = WorkerPanel(worker)
    try:
        assert "autoscale 2–6" in panel.header.value
        assert "pool threads × " in panel.header.value
    finally:
        panel.close()
