"""Which task, if any, the current thread is running (like Celery's ``current_task``)."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["current_request", "pop_request", "push_request"]

_local = threading.local()


def push_request(request: Any) -> None:
    """Mark the current thread as running `request` (a task's request context)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(request)


def pop_request() -> None:
    _local.stack.pop()


def current_request() -> Any | None:
    """The innermost request this thread is running, or ``None`` outside tasks."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None
