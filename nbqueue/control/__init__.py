"""Remote control over kombu's pidbox: Celery's commands, per-app registry, client.

>>> app.control.inspect().ping()                       # {"w1@host": {"ok": "pong"}}
>>> app.control.revoke(task_id)                        # broadcast, no reply
>>> @app.control.commands.inspect_command()            # a command of your own
... def queue_depths(ctx):
...     return ctx.worker.queue_sizes()
"""

from __future__ import annotations

from .client import Control, Inspect, flatten_reply
from .control_commands import CONTROL_COMMANDS, running_step
from .inspect_commands import INSPECT_COMMANDS, jsonable
from .node import ControlNode
from .registry import (
    NO_REPLY,
    Command,
    CommandRegistry,
    ControlContext,
    ErrorReply,
    OkReply,
    nok,
    ok,
)

__all__ = [
    "CONTROL_COMMANDS",
    "INSPECT_COMMANDS",
    "NO_REPLY",
    "Command",
    "CommandRegistry",
    "Control",
    "ControlContext",
    "ControlNode",
    "ErrorReply",
    "Inspect",
    "OkReply",
    "flatten_reply",
    "jsonable",
    "nok",
    "ok",
    "running_step",
]
