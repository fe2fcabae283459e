"""The Jupyter layer: ``%load_ext nbqueue`` magics, live widgets, output routing.

The only package that imports IPython, ipykernel and ipywidgets, and only when used:
importing ``nbqueue`` never does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbqueue``: register the magics, routing and rich displays (idempotent)."""
    from .magics import NbqueueMagics
    from .session import JupyterSession

    if _magics(ipython) is not None:
        return
    session = JupyterSession(ipython)
    session.install()
    ipython.register_magics(NbqueueMagics(ipython, session))


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbqueue``: undo `load_ipython_extension` (workers keep running)."""
    magics = _magics(ipython)
    if magics is None:
        return
    magics.session.uninstall()
    registry = ipython.magics_manager
    for kind, names in (("cell", ["task"]), ("line", ["worker", "nbqueue"])):
        for name in names:
            registry.magics[kind].pop(name, None)
    registry.registry.pop("NbqueueMagics", None)


def _magics(ipython: Any) -> Any:
    return ipython.magics_manager.registry.get("NbqueueMagics")
