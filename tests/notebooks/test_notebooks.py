"""Every notebook in notebooks/ runs top to bottom in a fresh kernel and asserts its claims;
none is stored with outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 180  # seconds per cell; a notebook's own waits are shorter


@pytest.fixture
def kernel_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec named ``python3`` that runs *this* interpreter, with private IPython
    and Jupyter dirs, so the notebooks' metadata resolves to the environment under test."""
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("NBQUEUE_SECRET_KEY", raising=False)
    return str(tmp_path)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} keep outputs (strip them before committing)"
    assert "widgets" not in nb.metadata, f"{path.name}: stored widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(
    path: Path, kernel_dirs: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # notebooks that use Redis read this (a database no other test process holds);
    # a user's notebook falls back to redis://127.0.0.1:6379/0
    monkeypatch.setenv("NBQUEUE_REDIS_URL", redis_url)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()
