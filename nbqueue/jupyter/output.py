"""Send what a task prints, logs or displays to the cell that started it.

ipykernel 7 keeps the parent message (the running cell) in context variables, with a
global fallback: a pool thread that never set one writes under whichever cell happens to
run *now*. The `OutputRouter` records the current parent when a cell sends a task (the
app's ``before_task_publish`` signal, in the sending thread) and, while that task runs in a
pool thread (``task_prerun`` … ``task_postrun``), sets it as that thread's parent with the
shell's ``set_thread_parent``. Tasks sent by a routed task inherit its cell.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from .. import states
from ..context import current_request

__all__ = ["OutputRouter"]

logger = logging.getLogger(__name__)

#: parents remembered for tasks not run yet (sent to other processes, or never run)
_MAX_PENDING = 100_000


class OutputRouter:
    """Routes a kernel's task output by cell, for every app `attach`-ed to it."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._parents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._tokens = threading.local()
        self._lock = threading.Lock()
        self._main = threading.main_thread()
        self._apps: list[Any] = []
        #: ids of the tasks the running cell sent (for revoke-on-interrupt)
        self.sent_by_cell: list[str] = []

    @property
    def supported(self) -> bool:
        """Whether this shell can set a per-thread parent (ipykernel ≥ 7)."""
        return hasattr(self.shell, "set_thread_parent") and hasattr(self.shell, "get_parent")

    def attach(self, app: Any) -> None:
        """Route the output of `app`'s tasks (idempotent)."""
        if any(a is app for a in self._apps):
            return
        self._apps.append(app)
        app.signals.before_task_publish.connect(self._on_publish)
        app.signals.task_prerun.connect(self._on_prerun)
        app.signals.task_postrun.connect(self._on_postrun)

    def detach_all(self) -> None:
        for app in self._apps:
            app.signals.before_task_publish.disconnect(self._on_publish)
            app.signals.task_prerun.disconnect(self._on_prerun)
            app.signals.task_postrun.disconnect(self._on_postrun)
        self._apps.clear()

    def _sender_parent(self) -> dict[str, Any] | None:
        """The cell the sending thread works for: the running cell, or a routed task's."""
        if threading.current_thread() is self._main:
            return self.shell.get_parent() if self.supported else None
        request = current_request()
        if request is None or request.id is None:
            return None
        with self._lock:
            return self._parents.get(request.id)

    def _on_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        task_id = (headers or {}).get("id")
        if not task_id:
            return
        parent = self._sender_parent()
        if threading.current_thread() is self._main:
            self.sent_by_cell.append(task_id)
        if not parent:
            return
        with self._lock:
            self._parents[task_id] = parent
            while len(self._parents) > _MAX_PENDING:
                self._parents.popitem(last=False)

    def parent_of(self, task_id: str) -> dict[str, Any] | None:
        """The parent message recorded for `task_id`, if any."""
        with self._lock:
            return self._parents.get(task_id)

    def _on_prerun(self, sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        if not self.supported or task_id is None or threading.current_thread() is self._main:
            return
        parent = self.parent_of(task_id)
        stack = getattr(self._tokens, "stack", None)
        if stack is None:
            stack = self._tokens.stack = []
        stack.append(None if parent is None else self.shell.set_thread_parent(parent))

    def _on_postrun(
        self, sender: Any = None, task_id: str | None = None, state: str = "", **_: Any
    ) -> None:
        if not self.supported or task_id is None or threading.current_thread() is self._main:
            return
        stack = getattr(self._tokens, "stack", None)
        if state != states.RETRY:  # a retry runs again under the same id: keep its cell
            with self._lock:
                self._parents.pop(task_id, None)
        token = stack.pop() if stack else None
        if token is not None:  # streams buffer text by parent: nothing written is misrouted
            self.shell.reset_thread_parent(token)

    def new_cell(self) -> None:
        """A cell starts: forget which tasks the previous one sent."""
        self.sent_by_cell = []
