"""``nbqueue inspect|control|status|events``: talk to running workers, as Celery's CLI does."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .loading import EX_UNAVAILABLE, EX_USAGE, add_app_option, load_app

__all__ = ["add_parsers"]

NO_REPLY = "Error: No nodes replied within time constraint"

#: control commands and how their positional CLI arguments map onto keyword arguments
CONTROL_ARGS: dict[str, tuple[str, ...]] = {
    "revoke": ("task_id*",),
    "terminate": ("signal", "task_id*"),
    "rate_limit": ("task_name", "rate_limit"),
    "time_limit": ("task_name", "soft", "hard"),
    "add_consumer": ("queue", "exchange", "exchange_type", "routing_key"),
    "cancel_consumer": ("queue",),
    "pool_grow": ("n",),
    "pool_shrink": ("n",),
    "autoscale": ("max", "min"),
    "shutdown": (),
    "enable_events": (),
    "disable_events": (),
    "heartbeat": (),
}
_NUMBERS = {"n": int, "max": int, "min": int, "soft": float, "hard": float}


def _nodes(destination: str | None) -> list[str] | None:
    return [n.strip() for n in destination.split(",") if n.strip()] if destination else None


def _pluralize(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_replies(replies: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(replies, indent=2, default=repr))
        return 0
    failed = False
    for node, reply in sorted(replies.items()):
        error = isinstance(reply, dict) and "error" in reply
        failed |= error
        print(f"->  {node}: {'ERROR' if error else 'OK'}")
        body = reply.get("error" if error else "ok", reply) if isinstance(reply, dict) else reply
        if body == "pong" or body is None:
            body = "pong" if body == "pong" else ""
        text = body if isinstance(body, str) else json.dumps(body, indent=4, default=repr)
        for line in text.splitlines():
            print(f"        {line}")
    print(f"\n{_pluralize(len(replies), 'node')} online.")
    return 1 if failed else 0


def inspect(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    inspector = app.control.inspect(destination=_nodes(args.destination), timeout=args.timeout)
    method = getattr(inspector, args.method, None)
    if method is None or args.method.startswith("_"):
        print(f"Error: unknown inspect command {args.method!r}", file=sys.stderr)
        return EX_USAGE
    replies = method(*args.arguments)
    if not replies:
        print(NO_REPLY, file=sys.stderr)
        return EX_UNAVAILABLE
    return _print_replies(replies, args.json)


def _control_kwargs(command: str, values: list[str]) -> dict[str, Any]:
    spec = CONTROL_ARGS[command]
    kwargs: dict[str, Any] = {}
    for name, value in zip(spec, values, strict=False):
        if name.endswith("*"):
            kwargs[name[:-1]] = values[spec.index(name) :]
            break
        kwargs[name] = _NUMBERS.get(name, str)(value)
    if len(values) > len(spec) and not any(n.endswith("*") for n in spec):
        raise ValueError(f"{command} takes at most {len(spec)} arguments: {' '.join(spec)}")
    return kwargs


def control(args: argparse.Namespace) -> int:
    if args.method not in CONTROL_ARGS:
        print(
            f"Error: unknown control command {args.method!r}; one of "
            f"{', '.join(sorted(CONTROL_ARGS))}",
            file=sys.stderr,
        )
        return EX_USAGE
    try:
        kwargs = _control_kwargs(args.method, args.arguments)
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EX_USAGE
    app = load_app(args.app)
    reply = args.method != "shutdown"
    replies = app.control.broadcast(
        args.method,
        arguments=kwargs,
        destination=_nodes(args.destination),
        timeout=args.timeout,
        reply=reply,
    )
    if not reply:
        print(f"shutdown sent to {args.destination or 'every worker'}")
        return 0
    if not replies:
        print(NO_REPLY, file=sys.stderr)
        return EX_UNAVAILABLE
    merged: dict[str, Any] = {}
    for item in replies:
        merged.update(item)
    return _print_replies(merged, args.json)


def status(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    replies = app.control.inspect(timeout=args.timeout).ping()
    if not replies:
        print(NO_REPLY, file=sys.stderr)
        return EX_UNAVAILABLE
    for node in sorted(replies):
        print(f"{node}: OK")
    print(f"\n{_pluralize(len(replies), 'node')} online.")
    return 0


def _render(state: Any, width: int = 100) -> str:
    """The live view: workers by heartbeat, task counts, the latest tasks."""
    snapshot = state.snapshot()
    lines = [f"nbqueue events - {time.strftime('%H:%M:%S')}", "", "workers:"]
    for worker in snapshot["workers"]:
        alive = "online" if worker["alive"] else "OFFLINE"
        lines.append(
            f"  {worker['hostname']:<40} {alive:<8} active={worker['active'] or 0} "
            f"processed={worker['processed'] or 0}"
        )
    counts = ", ".join(f"{k}={v}" for k, v in sorted(snapshot["tasks"].items()))
    lines += ["", f"tasks: {counts or 'none yet'}", ""]
    for task in state.tasks_by_time(limit=20):
        line = f"  {task.state:<9} {task.name or '?':<30} {task.uuid}"
        lines.append(line[:width])
    return "\n".join(lines)


def events(args: argparse.Namespace) -> int:
    """A live view of workers and tasks from the event stream (or a dump of the events)."""
    app = load_app(args.app)
    state = app.events.State()

    def on_event(event: dict[str, Any]) -> None:
        state.event(event)
        if args.dump:
            print(json.dumps(event, default=repr), flush=True)

    deadline = None if args.duration is None else time.monotonic() + args.duration
    with app.events.Receiver(handlers={"*": on_event}).start():
        try:
            while deadline is None or time.monotonic() < deadline:
                if not args.dump:
                    sys.stdout.write("\x1b[2J\x1b[H" if sys.stdout.isatty() else "\n")
                    print(_render(state), flush=True)
                time.sleep(args.interval)  # the refresh rate of the view, not synchronisation
        except KeyboardInterrupt:
            pass
    return 0


def _remote_parser(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help_text)
    add_app_option(p)
    p.add_argument("-t", "--timeout", type=float, default=1.0, help="seconds to wait for replies")
    p.add_argument("-d", "--destination", help="comma-separated node names")
    p.add_argument("-j", "--json", action="store_true", help="print the replies as JSON")
    return p


def add_parsers(commands: Any) -> None:
    p = _remote_parser(commands, "inspect", "ask workers (ping, stats, active, registered, ...)")
    p.add_argument("method")
    p.add_argument("arguments", nargs="*")
    p.set_defaults(handler=inspect)
    p = _remote_parser(commands, "control", "tell workers (revoke, rate_limit, shutdown, ...)")
    p.add_argument("method")
    p.add_argument("arguments", nargs="*")
    p.set_defaults(handler=control)
    p = commands.add_parser("status", help="list the workers that answer a ping")
    add_app_option(p)
    p.add_argument("-t", "--timeout", type=float, default=1.0)
    p.set_defaults(handler=status)
    p = commands.add_parser("events", help="watch workers and tasks live")
    add_app_option(p)
    p.add_argument("--dump", action="store_true", help="print every event as JSON")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(handler=events)
