"""A notebook run by nbclient in a real kernel: stored widget state of the bar and panel."""

from __future__ import annotations

import copy
import re

from nbclient import NotebookClient

from tests.kernel.conftest import write_notebook

CELLS = [
    "%load_ext nbqueue\nimport nbqueue\napp = nbqueue.App('kernel')",
    "%%task inc(x)\nreturn x + 1",
    "%worker start -c 4 --name nbk",
    "from nbqueue.jupyter.progress import ProgressView\n"
    "g = nbqueue.group(inc.s(i) for i in range(500)).apply_async()\n"
    "view = ProgressView(g)\n"
    "display(view)\n"
    "assert view.wait(60), view\n"
    "view.bar.model_id",
    "%worker stop nbk",
    "nbqueue.progress(g)",
]


def _step_states(state: dict) -> dict[str, str]:
    """Step name → state, read from the panel's HTML widgets (live or stored state)."""
    found = {}
    for model in state.values():
        value = model.get("state", model).get("value")
        if isinstance(value, str) and "nbqueue-step" in value:
            step = re.search(r'data-step="(\w+)"', value).group(1)
            found[step] = re.search(r'data-state="(\w+)"', value).group(1)
    return found


def test_group_bar_reaches_500_and_the_panel_shows_steps_running_then_stopped(
    tmp_path, kernel_manager
) -> None:
    nb = write_notebook(tmp_path / "widgets.ipynb", CELLS)
    client = NotebookClient(nb, km=kernel_manager, timeout=120)
    after: list[dict] = []
    with client.setup_kernel(cleanup_kc=True):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            after.append(copy.deepcopy(client.widget_state))
    client.set_widgets_metadata()

    started = _step_states(after[2])
    steps = [name for name, state in started.items() if state != "disabled"]
    assert {"timer", "hub", "pool", "consumer", "connection", "tasks"} <= set(steps)
    assert started == {**started, **dict.fromkeys(steps, "running")}
    model_id = nb.cells[3].outputs[-1]["data"]["text/plain"].strip("'")
    bar = after[3][model_id]
    assert bar["_model_name"] == "FloatProgressModel"
    assert (bar["value"], bar["max"], bar["bar_style"]) == (500.0, 500.0, "success")
    assert _step_states(after[4]) == {**started, **dict.fromkeys(steps, "stopped")}
    assert len(after) == len(CELLS)
    assert "stopped nbk@" in nb.cells[4].outputs[0]["text"]

    stored = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert stored[model_id]["state"]["value"] == 500.0
    assert _step_states(stored) == {**started, **dict.fromkeys(steps, "stopped")}
    shown = nb.cells[5].outputs[0]  # nbqueue.progress() in a kernel: a widget, displayed
    assert shown["output_type"] == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
    assert shown["data"]["text/plain"].startswith("<ProgressView 500/500")
    panel_output = nb.cells[2].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in panel_output
    assert "<svg" in panel_output["text/html"]  # the fallback without a widget manager
