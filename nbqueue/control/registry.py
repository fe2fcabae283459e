"""Remote-control commands and the per-app registry that holds them.

A command is a function ``handler(ctx, **arguments)``: `ctx` is the `ControlContext` of
the worker answering, the arguments come from the request. Whatever the handler returns
is the node's reply (``{"ok": ...}``/``{"error": ...}`` by convention, any JSON value
for inspect commands). Each app has its own registry, ``app.control.commands``:

>>> @app.control.commands.inspect_command()
... def queue_depths(ctx):
...     return ctx.worker.queue_sizes()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

__all__ = [
    "NO_REPLY",
    "Command",
    "CommandRegistry",
    "ControlContext",
    "ErrorReply",
    "OkReply",
    "nok",
    "ok",
]

CommandType = Literal["control", "inspect"]


class _NoReply:
    """What a handler returns when the node must not answer (``shutdown``)."""

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY = _NoReply()


class OkReply(TypedDict):
    ok: Any


class ErrorReply(TypedDict):
    error: Any


def ok(value: Any) -> OkReply:
    """Celery's success reply: ``{"ok": value}``."""
    return {"ok": value}


def nok(value: Any) -> ErrorReply:
    """Celery's failure reply: ``{"error": value}``."""
    return {"error": value}


@dataclass(frozen=True)
class ControlContext:
    """What a handler works on: the answering worker, its app and node name."""

    worker: Any
    app: Any
    hostname: str


@dataclass(frozen=True)
class Command:
    """One remote-control command and how a CLI should present it."""

    name: str
    handler: Callable[..., Any]
    type: CommandType = "control"
    #: shown in command listings (``hello`` is hidden, as in Celery)
    visible: bool = True
    #: seconds a client waits for replies by default
    default_timeout: float = 1.0
    #: positional CLI arguments: (name, type) pairs
    args: tuple[tuple[str, type], ...] = ()
    #: a CLI argument that takes the remaining words as a list
    variadic: str | None = None
    signature: str | None = None
    alias: str | None = None
    help: str = ""


class CommandRegistry:
    """Commands by name (aliases included); one per app, never shared."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for command in commands:
            self.add(command)

    def add(self, command: Command) -> Command:
        self._commands[command.name] = command
        if command.alias:
            self._commands[command.alias] = command
        return command

    def register(
        self,
        handler: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        type: CommandType = "control",
        **meta: Any,
    ) -> Any:
        """Register `handler` (usable as a decorator); the name defaults to the function's."""

        def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
            doc = (fun.__doc__ or "").strip().splitlines()
            meta.setdefault("help", doc[0] if doc else "")
            self.add(Command(name or fun.__name__, fun, type=type, **meta))
            return fun

        return decorate(handler) if handler is not None else decorate

    def control_command(self, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a command that changes the worker."""
        return self.register(type="control", **meta)

    def inspect_command(self, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a read-only command."""
        return self.register(type="inspect", **meta)

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Name (and alias) → handler, what a pidbox node dispatches on."""
        return {name: command.handler for name, command in self._commands.items()}

    def __getitem__(self, name: str) -> Command:
        return self._commands[name]

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __iter__(self) -> Iterator[Command]:
        """Each command once (aliases skipped), sorted by name."""
        seen = {id(c): c for c in self._commands.values()}
        return iter(sorted(seen.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len({id(c) for c in self._commands.values()})

    def __repr__(self) -> str:
        return f"<CommandRegistry: {len(self)} commands>"
