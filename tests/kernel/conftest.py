"""Real ipykernel processes: a kernelspec for this interpreter, notebooks the tests write,
and a raw client that keeps every IOPub message by the cell (parent) it belongs to."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

KERNEL = "nbqueue-test"


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KernelSpecManager:
    """A kernelspec running *this* interpreter, with private IPython and Jupyter dirs."""
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("NBQUEUE_SECRET_KEY", raising=False)
    return KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])


@pytest.fixture
def kernel_manager(kernel_env: KernelSpecManager) -> Iterator[KernelManager]:
    """An unstarted kernel manager for the test kernelspec (shut down after the test)."""
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_env)
    km.shutdown_wait_time = 10.0
    try:
        yield km
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def write_notebook(path: Path, cells: list[str]) -> nbformat.NotebookNode:
    """Write a notebook of code cells to `path` and read it back."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)


class RawKernel:
    """Executes code and keeps every IOPub message, grouped by the request it answers."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.by_parent: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def execute(self, code: str) -> str:
        return self.kc.execute(code)

    def pump(self, until: Any, timeout: float = 60.0) -> None:
        """Read IOPub until `until()` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; messages so far: {dict(self.by_parent)}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(remaining, 1.0))
            except Exception:  # queue.Empty: nothing yet
                continue
            self.by_parent[msg["parent_header"].get("msg_id", "")].append(msg)

    def idle(self, msg_id: str) -> bool:
        return any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            for m in self.by_parent[msg_id]
        )

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Execute `code` to the end; fail on an error. Returns the request's msg id."""
        msg_id = self.execute(code)
        self.pump(lambda: self.idle(msg_id), timeout)
        errors = [m for m in self.by_parent[msg_id] if m["msg_type"] == "error"]
        assert not errors, "\n".join("\n".join(m["content"]["traceback"]) for m in errors)
        return msg_id

    def text(self, msg_id: str, name: str | None = None) -> str:
        """Everything streamed under request `msg_id` (stdout and stderr, or one of them)."""
        return "".join(
            m["content"]["text"]
            for m in self.by_parent[msg_id]
            if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name)
        )

    def displayed(self, msg_id: str) -> str:
        return "".join(
            json.dumps(m["content"]["data"])
            for m in self.by_parent[msg_id]
            if m["msg_type"] in ("display_data", "execute_result")
        )

    def close(self) -> None:
        self.kc.stop_channels()


@pytest.fixture
def raw_kernel(kernel_manager: KernelManager) -> Iterator[RawKernel]:
    kernel_manager.start_kernel()
    kernel = RawKernel(kernel_manager)
    try:
        yield kernel
    finally:
        kernel.close()
