"""``nbqueue worker``: a worker process, with Celery's options and shutdown behaviour.

SIGTERM or SIGINT starts a warm shutdown (running tasks finish, reserved messages go back);
a second signal makes it cold (running tasks are abandoned). SIGUSR1 dumps every thread's
stack to stderr, as Celery's workers do. Exit code 0 after a warm
shutdown, 1 after a cold one or when the worker cannot start.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import socket
import sys
from typing import Any

from .loading import add_app_option, load_app

__all__ = ["add_parser", "expand_hostname"]

LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(threadName)s] %(message)s"


def expand_hostname(template: str) -> str:
    """Celery's node-name placeholders: %h host, %n short host, %d domain, %i pid."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    for key, value in (("%h", host), ("%n", short), ("%d", domain), ("%i", str(os.getpid()))):
        template = template.replace(key, value)
    return template


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "pool": args.pool,
        "queues": args.queues,
        "send_events": args.events or None,
        "beat": args.beat,
        "statedb": args.statedb,
        "prefetch_multiplier": args.prefetch_multiplier,
        "shutdown_timeout": args.shutdown_timeout,
        "without_heartbeat": args.without_heartbeat,
        "without_gossip": args.without_gossip,
        "without_mingle": args.without_mingle,
    }
    if args.hostname:
        options["hostname"] = expand_hostname(args.hostname)
    if args.autoscale:
        high, _, low = args.autoscale.partition(",")
        options["autoscale"] = (int(high), int(low or 0))
    return {k: v for k, v in options.items() if v not in (None, False)}


def _banner(app: Any, worker: Any) -> str:
    tasks = "\n".join(f"  . {name}" for name in app.tasks.user_tasks()) or "  (none)"
    return (
        f"-------------- {worker.hostname} (nbqueue)\n"
        f"--- app:         {app.main}\n"
        f"--- transport:   {app.broker.url}\n"
        f"--- results:     {app.conf.result_backend}\n"
        f"--- concurrency: {worker.options.concurrency} ({worker.options.pool})\n"
        f"--- queues:      {', '.join(worker.options.queues)}\n\n"
        f"[tasks]\n{tasks}\n"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.loglevel.upper(), format=LOG_FORMAT)
    app = load_app(args.app)
    worker = app.worker(**_options(args))
    print(_banner(app, worker), flush=True)
    shutdowns: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        how = "Warm" if not shutdowns else "Cold"
        shutdowns.append(how)
        print(f"worker: {how} shutdown (MainProcess)", flush=True)
        if how == "Warm":
            worker.stop_soon()
        else:
            worker.cold = True
            worker.state.wake()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: dump every thread
    try:
        worker.start()
    except Exception as exc:
        print(f"Error: the worker could not start: {exc}", file=sys.stderr)
        return 1
    while not worker.join(0.5):  # a short join keeps the main thread responsive to signals
        pass
    return 1 if "Cold" in shutdowns else 0


def add_parser(commands: Any) -> None:
    p = commands.add_parser("worker", help="start a worker process")
    add_app_option(p)
    p.add_argument("-c", "--concurrency", type=int, help="pool size (default: CPUs)")
    p.add_argument("-P", "--pool", choices=["threads", "processes", "solo"], help="pool kind")
    p.add_argument("-Q", "--queues", help="comma-separated queues to consume")
    p.add_argument("-n", "--hostname", help="node name, e.g. w1@%%h (%%h host, %%n short, %%i pid)")
    p.add_argument("-E", "--events", action="store_true", help="send task events")
    p.add_argument("-B", "--beat", action="store_true", help="run the periodic scheduler too")
    p.add_argument("--autoscale", metavar="MAX,MIN", help="grow and shrink the pool")
    p.add_argument("--statedb", help="file that keeps revoked ids and the clock across restarts")
    p.add_argument("--prefetch-multiplier", type=int, help="messages reserved per pool slot")
    p.add_argument("--shutdown-timeout", type=float, help="seconds a warm shutdown waits")
    p.add_argument("--without-heartbeat", action="store_true")
    p.add_argument("--without-gossip", action="store_true")
    p.add_argument("--without-mingle", action="store_true")
    p.add_argument(
        "-l",
        "--loglevel",
        default="WARNING",
        choices=[
            "DEBUG",
            "INFO",
            "WARNING",
            "ERROR",
            "CRITICAL",
            "debug",
            "info",
            "warning",
            "error",
            "critical",
        ],
    )
    p.set_defaults(handler=run)
