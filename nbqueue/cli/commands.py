"""``nbqueue purge`` and ``nbqueue call``: one-shot commands against an app's broker."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .loading import EX_USAGE, add_app_option, load_app

__all__ = ["add_parsers"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def purge(args: argparse.Namespace) -> int:
    """Erase all messages from the named (default: all known) task queues."""
    app = load_app(args.app)
    names = set(args.queues.split(",") if args.queues else app.router.queues)
    names -= set(args.exclude_queues.split(",") if args.exclude_queues else ())
    if not names:
        print("No queues to purge.")
        return 0
    if not args.force:
        answer = input(
            f"WARNING: this removes all tasks from {_plural(len(names), 'queue')}: "
            f"{', '.join(sorted(names))}. There is no undo.\n"
            "Are you sure you want to delete all tasks? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("Aborted!")
            return 1
    with app.connection() as conn:
        channel = conn.default_channel
        purged = sum(channel.queue_purge(name) or 0 for name in sorted(names))
    if purged:
        print(
            f"Purged {_plural(purged, 'message')} from {len(names)} known task "
            f"{'queue' if len(names) == 1 else 'queues'}."
        )
    else:
        print(f"No messages purged from {_plural(len(names), 'queue')}.")
    return 0


def _json_arg(text: str | None, kind: type, flag: str) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SystemExit(_usage(f"{flag} is not JSON: {exc}")) from None
    if not isinstance(value, kind):
        raise SystemExit(_usage(f"{flag} must be a JSON {kind.__name__}"))
    return value


def _usage(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return EX_USAGE


def call(args: argparse.Namespace) -> int:
    """Send a task by name; print its id (and, with --wait, its result)."""
    app = load_app(args.app)
    options = {
        k: v
        for k, v in (
            ("countdown", args.countdown),
            ("eta", args.eta),
            ("expires", args.expires),
            ("queue", args.queue),
        )
        if v is not None
    }
    result = app.send_task(
        args.name,
        _json_arg(args.args, list, "--args"),
        _json_arg(args.kwargs, dict, "--kwargs"),
        **options,
    )
    print(result.id, flush=True)
    if not args.wait:
        return 0
    from ..progress import show_in_terminal

    show_in_terminal(result, timeout=args.timeout, description=args.name)
    try:
        value = result.get(timeout=args.timeout)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(value, default=repr))
    return 0


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("purge", help="erase all messages from task queues")
    add_app_option(p)
    p.add_argument("-f", "--force", action="store_true", help="don't ask for confirmation")
    p.add_argument("-Q", "--queues", help="comma-separated queues (default: all known)")
    p.add_argument("-X", "--exclude-queues", help="comma-separated queues to leave alone")
    p.set_defaults(handler=purge)

    p = commands.add_parser("call", help="send a task by name")
    add_app_option(p)
    p.add_argument("name", help="the task's name")
    p.add_argument("-a", "--args", help='positional arguments as JSON, e.g. "[1, 2]"')
    p.add_argument("-k", "--kwargs", help="keyword arguments as JSON, e.g. '{\"x\": 1}'")
    p.add_argument("--countdown", type=float, help="run in this many seconds")
    p.add_argument("--eta", help="run at this ISO-8601 time")
    p.add_argument("--expires", type=float, help="discard if not started within seconds")
    p.add_argument("--queue", help="send to this queue")
    p.add_argument("--wait", action="store_true", help="wait for the result, with progress")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait with --wait")
    p.set_defaults(handler=call)
