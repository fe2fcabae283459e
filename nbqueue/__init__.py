"""nbqueue: Celery's engine, made embeddable — a task queue that lives in your kernel.

>>> import nbqueue
>>> app = nbqueue.App("demo")              # in-process broker and results: nothing to start
>>> @app.task
... def add(x, y):
...     return x + y
>>> with app.worker(concurrency=4):
...     add.delay(2, 3).get(timeout=10)
5
"""

from __future__ import annotations

import sys
from typing import Any

from . import exceptions, states
from . import progress as _progress_model  # loaded first, so `progress` below stays a function
from .app import App
from .bootsteps import Step
from .canvas import Signature, chain, chord, chunks, group, signature, xmap, xstarmap
from .result import AsyncResult, EagerResult, GroupResult, ResultBase
from .task import Task

__version__ = "0.1.0"


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and getattr(shell, "kernel", None) is not None


def progress(result: ResultBase, *, timeout: float | None = None) -> Any:
    """Show how far `result` has come: a live widget in a Jupyter kernel, a bar elsewhere."""
    if _in_kernel():
        try:
            from .jupyter.progress import show
        except ImportError:  # the Jupyter layer needs ipywidgets
            pass
        else:
            return show(result)
    return _progress_model.show_in_terminal(result, timeout=timeout)


# IPython's extension hooks (found by name, not part of `__all__`)
def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbqueue``: the magics and widgets of `nbqueue.jupyter`, imported now."""
    from .jupyter import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbqueue``."""
    from .jupyter import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "App",
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "Signature",
    "Step",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "exceptions",
    "group",
    "progress",
    "signature",
    "states",
    "xmap",
    "xstarmap",
]
