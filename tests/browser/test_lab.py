"""JupyterLab in headless Chromium: the worker panel and a progress bar render and go live."""

from __future__ import annotations

from tests.browser.conftest import open_notebook, run_all_cells
from tests.kernel.conftest import write_notebook

CELLS = [
    "%load_ext nbqueue\nimport nbqueue\napp = nbqueue.App('browser')",
    "%%task inc(x)\nreturn x + 1",
    "%worker start -c 4 --name lab",
    "g = nbqueue.group(inc.s(i) for i in range(300)).apply_async()\ng",
]


def test_a_notebook_shows_a_live_worker_panel_and_a_bar_reaching_100(
    lab, browser, artifacts
) -> None:
    url, root = lab
    write_notebook(root / "demo.ipynb", CELLS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_notebook(page, url, "demo.ipynb")
        run_all_cells(page)
        page.wait_for_function(  # every step of the panel running, but those left out
            "() => { const steps = [...document.querySelectorAll('.nbqueue-step')];"
            " return steps.length >= 6 && steps.every(s => ['running', 'disabled']"
            ".includes(s.dataset.state)); }",
            timeout=90_000,
        )
        page.wait_for_function(
            "() => { const bar = document.querySelector('.widget-hprogress .progress-bar');"
            " return bar && bar.style.width === '100%'; }",
            timeout=90_000,
        )
        label = page.locator(".widget-hprogress").locator("xpath=..").inner_text()
        assert "300/300" in label
        running = page.locator(".nbqueue-step[data-state='running']")
        for step in ("timer", "hub", "pool", "consumer", "connection", "tasks"):
            assert running.locator(f"xpath=self::*[@data-step='{step}']").count() == 1, step
    finally:  # kept as the test's artifact, passed or failed
        page.screenshot(path=str(artifacts / "browser-worker-panel.png"), full_page=True)
        page.close()
