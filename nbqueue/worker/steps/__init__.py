"""The worker's and the consumer's default bootsteps, one module per step."""

from __future__ import annotations

from ...bootsteps import Step
from .autoreloader import Autoreloader
from .autoscaler import Autoscaler
from .beat import Beat
from .connection import Connection
from .consumer import Consumer
from .hub import Hub
from .pool import Pool
from .statedb import StateDB
from .tasks import Tasks
from .timer import Timer

__all__ = ["consumer_steps", "worker_steps"]


def worker_steps() -> list[type[Step]]:
    """Default worker blueprint steps (the consumer is last)."""
    return [Timer, Hub, Pool, Autoscaler, StateDB, Autoreloader, Beat, Consumer]


def consumer_steps() -> list[type[Step]]:
    """Default consumer blueprint steps."""
    return [Connection, Tasks]
