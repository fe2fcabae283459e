"""JupyterLab on a free loopback port with a private configuration, and Debian's Chromium
driven by Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_config(root: Path) -> dict[str, str]:
    """Config, data, runtime and IPython dirs of our own; no token, no network calls."""
    config = root / "config"
    config.mkdir()
    settings = {
        # CI runs as root in a throwaway machine
        "ServerApp": {
            "open_browser": False,
            "ip": "127.0.0.1",
            "port_retries": 0,
            "allow_root": True,
        },
        "IdentityProvider": {"token": ""},
        "LabApp": {
            "extension_manager": "readonly",
            "news_url": None,
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            "expose_app_in_browser": True,
        },
    }
    (config / "jupyter_server_config.json").write_text(json.dumps(settings))
    # user settings live in the config dir: no "get notified about Jupyter news?" toast, and
    # the notebook's kernel starts without a "Select Kernel" dialog
    user_settings = config / "lab" / "user-settings" / "@jupyterlab"
    for extension, name, value in [
        ("apputils-extension", "notification", {"fetchNews": "false"}),
        ("notebook-extension", "tracker", {"autoStartDefaultKernel": True}),
    ]:
        (user_settings / extension).mkdir(parents=True)
        (user_settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(root / "data"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "IPYTHONDIR": str(root / "ipython"),
        # the kernelspec runs `python`: make it this interpreter
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base url, notebook folder)`` of a running JupyterLab, stopped after the test."""
    if not os.path.exists(CHROMIUM):
        service_missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    root = tmp_path / "notebooks"
    root.mkdir()
    port = _free_port()
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", f"--port={port}", f"--ServerApp.root_dir={root}"],
        env=_private_config(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _ready(url), timeout=90, message="JupyterLab")
        assert server.poll() is None, (tmp_path / "lab.log").read_text()
        yield url, root
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        service_missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def open_notebook(page: object, url: str, name: str) -> None:
    """Open `name` in Lab and wait until its kernel has started and is idle."""
    page.goto(f"{url}/lab/tree/{name}", timeout=90_000)
    page.wait_for_function(
        "() => window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=90_000
    )
    page.wait_for_function(  # a started kernel, not just an idle indicator without one
        "() => { const ctx = window.jupyterapp.shell.currentWidget?.sessionContext;"
        " return ctx?.session?.kernel?.status === 'idle'; }",
        timeout=90_000,
    )


def run_all_cells(page: object) -> None:
    """Start Lab's Run All (not awaited: its promise settles only when every cell has run)."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
