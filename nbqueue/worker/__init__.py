"""The worker: `Worker` (WorkController), its bootsteps, pools and request handling."""

from __future__ import annotations

from .controller import Worker, WorkerBlueprint, WorkerOptions

__all__ = ["Worker", "WorkerBlueprint", "WorkerOptions"]
