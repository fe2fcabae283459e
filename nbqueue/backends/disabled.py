"""The backend for ``result_backend=None``: results are dropped, and waiting says why."""

from __future__ import annotations

from typing import Any

from ..exceptions import BackendError
from .base import Backend

__all__ = ["DisabledBackend"]


class DisabledBackend(Backend):
    """No result store: storing is a no-op and reading raises a clear error."""

    def store_result(self, task_id: str, result: Any, state: str, **kwargs: Any) -> dict[str, Any]:
        return {"status": state, "result": result, "task_id": task_id}

    def _get(self, task_id: str) -> dict[str, Any] | None:
        raise BackendError("no result backend configured: set result_backend to read results")

    def _set(self, task_id: str, meta: dict[str, Any], state: str) -> None:
        pass

    def _delete(self, task_id: str) -> None:
        pass

    def _wait(
        self, task_id: str, timeout: float | None, seen: dict[str, Any]
    ) -> dict[str, Any] | None:
        return self._get(task_id)
