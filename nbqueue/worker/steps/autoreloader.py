"""Autoreloader: task modules changed on disk are reloaded while the worker runs.

Code re-defined *in the process* needs no reloader: the worker looks each message's task
up by name in ``app.tasks`` when the message arrives, so a re-run notebook cell or a
second ``@app.task`` takes effect for the next message received. This step covers code
changed *on disk* (``autoreload=True``): on each timer tick it compares the modification
time and size of the files that define the app's tasks, reloads the changed modules with
`importlib.reload`, and re-registers tasks whose function the reload replaced but whose
registration it did not renew (a module that registers on an app of its own, or
functions registered from outside the module).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ...bootsteps import Step
from ...task import Task, build_task_class

__all__ = ["Autoreloader"]

logger = logging.getLogger(__name__)

Stamp = tuple[int, int]


class Autoreloader(Step):
    """Every `interval` seconds, reloads the task modules whose file changed.

    Watches the modules that define the app's tasks (never ``__main__`` or nbqueue
    itself) plus the extra module names given as `modules`. A module that fails to reload
    (a syntax error mid-edit) is logged and keeps its old code until its file changes again.
    """

    requires = ("timer",)

    def __init__(self, worker: Any, *, interval: float = 1.0, modules: Iterable[str] = ()) -> None:
        super().__init__(worker, interval=interval, modules=modules)
        self.interval = interval
        self.modules = tuple(modules)
        self.reloaded: list[str] = []
        self.failed: list[str] = []
        self._stamps: dict[str, Stamp] = {}
        self._lock = threading.Lock()
        self._entry: Any = None

    def include(self, worker: Any) -> bool:
        return bool(worker.options.autoreload)

    def start(self, worker: Any) -> None:
        with self._lock:
            self._stamps = {
                name: stamp for name, path in self.watched().items() if (stamp := _stamp(path))
            }
        self._entry = worker.steps["timer"].timer.call_repeatedly(self.interval, self.tick)

    def stop(self, worker: Any) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.cancel()

    def watched(self) -> dict[str, str]:
        """Module name → source file, for the modules watched now."""
        names = {type(task).__module__ for task in list(self.parent.app.tasks.values())}
        found = {}
        for name in sorted(names.union(self.modules)):
            if name == "__main__" or name == "nbqueue" or name.startswith("nbqueue."):
                continue
            path = getattr(sys.modules.get(name), "__file__", None)
            if path and path.endswith(".py"):
                found[name] = path
        return found

    def tick(self) -> list[str]:
        """Reload the watched modules whose file changed; returns the names reloaded."""
        done = []
        with self._lock:
            for name, path in self.watched().items():
                stamp = _stamp(path)
                if stamp is None:
                    continue  # deleted or being replaced: look again next tick
                seen = self._stamps.setdefault(name, stamp)  # first sight: nothing to do
                if stamp != seen:
                    self._stamps[name] = stamp
                    if self._reload(name):
                        done.append(name)
        return done

    def _reload(self, name: str) -> bool:
        module = sys.modules[name]
        _drop_bytecode(module)
        try:
            fresh = importlib.reload(module)
        except Exception:
            logger.exception(
                "%s: could not reload %s; its tasks keep their old code", self.parent.hostname, name
            )
            self.failed.append(name)
            return False
        renewed = self._rebind(fresh)
        logger.info(
            "%s: reloaded %s (%d task(s) re-registered)", self.parent.hostname, name, renewed
        )
        self.reloaded.append(name)
        return True

    def _rebind(self, module: ModuleType) -> int:
        """Re-register this app's tasks from `module` that still run a replaced function."""
        app = self.parent.app
        renewed = 0
        for task in list(app.tasks.values()):
            cls = type(task)
            if cls.__module__ != module.__name__:
                continue
            current = _wrapped(task)  # None: a class-based task
            fn = _function(module, cls.__qualname__)
            if current is None or fn is None or fn is current:
                continue
            options = {k: v for k, v in cls._options.items() if k != "name"}
            base = cls.__mro__[1]
            app.tasks.register(
                build_task_class(app, fn, name=task.name, base=base, bind=task.bind, **options)()
            )
            renewed += 1
        return renewed

    def info(self) -> dict[str, Any]:
        return {
            "watched": sorted(self._stamps),
            "reloaded": list(self.reloaded),
            "failed": list(self.failed),
        }


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _drop_bytecode(module: ModuleType) -> None:
    """Remove the module's cached bytecode: it records the source mtime to the second only,
    so an edit within the same second (and of the same size) would otherwise be missed."""
    cached = getattr(module, "__cached__", None)
    if cached:
        with contextlib.suppress(OSError):
            os.unlink(cached)


def _function(module: ModuleType, qualname: str) -> Any:
    """The plain function now at `qualname` in `module` (unwrapping a task), or None."""
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, Task):
        return _wrapped(obj)
    return obj if callable(obj) else None


def _wrapped(task: Task) -> Any:
    """The plain function a task made by ``@app.task`` runs (on the class: not bound)."""
    return getattr(type(task), "__wrapped__", None)
