"""The worker's and the consumer's default bootsteps, one module per step."""

from __future__ import annotations

from ...bootsteps import Step
from .agent import Agent
from .autoreloader import Autoreloader
from .autoscaler import Autoscaler
from .beat import Beat
from .connection import Connection
from .consumer import Consumer
from .control import Control
from .events import Events
from .gossip import Gossip
from .heart import Heart
from .hub import Hub
from .mingle import Mingle
from .pool import Pool
from .statedb import StateDB
from .tasks import Tasks
from .timer import Timer

__all__ = ["consumer_steps", "worker_steps"]


def worker_steps() -> list[type[Step]]:
    """Default worker blueprint steps (the consumer is last)."""
    return [Timer, Hub, Pool, Autoscaler, StateDB, Autoreloader, Beat, Consumer]


def consumer_steps() -> list[type[Step]]:
    """Default consumer blueprint steps (edges as Celery's: connection → events → mingle →
    gossip; events → heart; mingle → tasks → control; connection → agent)."""
    return [Connection, Events, Mingle, Gossip, Heart, Tasks, Control, Agent]
