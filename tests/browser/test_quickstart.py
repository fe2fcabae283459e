"""The quickstart as a new user sees it: opened in JupyterLab, Run All, the widgets render
(the progress bar reaches 200/200, the worker panel follows the worker live) and no cell
writes anything to stderr."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.browser.conftest import open_notebook, run_all_cells

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01-quickstart.ipynb"

# every state each panel step showed, recorded in the page as the widgets redraw
RECORD_STEP_STATES = """() => {
    window.stepStates = {};
    const record = root => root.querySelectorAll?.('.nbqueue-step').forEach(step => {
        (window.stepStates[step.dataset.step] ??= new Set()).add(step.dataset.state);
    });
    new MutationObserver(changes => changes.forEach(change => {
        change.addedNodes.forEach(node => { if (node.nodeType === 1) record(node.parentNode); });
    })).observe(document.body, {childList: true, subtree: true});
}"""


def test_the_quickstart_runs_in_lab_with_live_widgets_and_no_errors(
    lab, browser, artifacts
) -> None:
    url, root = lab
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # Lab saves into its copy, never the repo's
    page = browser.new_page(viewport={"width": 1400, "height": 2800})  # the whole notebook
    try:
        open_notebook(page, url, NOTEBOOK.name)
        page.evaluate(RECORD_STEP_STATES)
        run_all_cells(page)
        # the last cell ran (its output, not its source, which says the same)
        page.locator(".jp-OutputArea-output", has_text="quickstart done").wait_for(timeout=120_000)
        page.wait_for_function(
            "() => { const bar = document.querySelector('.widget-hprogress .progress-bar');"
            " return bar && bar.style.width === '100%'; }",
            timeout=60_000,
        )
        label = page.locator(".widget-hprogress").locator("xpath=..").inner_text()
        assert "200/200" in label, label
        # the panel followed the worker: running while it worked, stopped by the last cell
        page.wait_for_function(
            "() => { const steps = [...document.querySelectorAll('.nbqueue-step')];"
            " return steps.length >= 6 && steps.every(s => ['stopped', 'disabled']"
            ".includes(s.dataset.state)); }",
            timeout=60_000,
        )
        seen = page.evaluate(
            "() => Object.fromEntries(Object.entries(window.stepStates)"
            ".map(([step, states]) => [step, [...states]]))"
        )
        for step in ("timer", "hub", "pool", "consumer", "connection", "tasks"):
            assert {"running", "stopped"} <= set(seen.get(step, [])), (step, seen)
        stderr = page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
        )
        assert stderr.count() == 0, stderr.all_inner_texts()
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        assert prompts and all(p.strip() not in ("[ ]:", "[*]:") for p in prompts), prompts
    finally:  # kept as the test's artifact, passed or failed
        page.screenshot(path=str(artifacts / "browser-quickstart.png"), full_page=True)
        page.close()
