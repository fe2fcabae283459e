"""``%%task``, ``%worker`` and ``%nbqueue``: argument parsing only, over the public API.

The logic lives elsewhere (`cellfunc`, `queues`, the app and worker themselves); each
magic parses its line with ``@magic_arguments`` and calls one thing.
"""

from __future__ import annotations

import socket
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool

from ..exceptions import NbqueueError
from .cellfunc import SignatureError, build_function, split_signature
from .session import JupyterSession, NoApp

__all__ = ["NbqueueMagics"]

INSPECT_COMMANDS = (
    "ping",
    "stats",
    "active",
    "reserved",
    "scheduled",
    "revoked",
    "registered",
    "active_queues",
    "query_task",
    "conf",
    "clock",
    "report",
)


@magics_class
class NbqueueMagics(Magics):
    """The nbqueue magics; ``%config NbqueueMagics.revoke_on_interrupt = True`` to revoke."""

    revoke_on_interrupt = Bool(
        False, help="Revoke the tasks a cell sent when that cell is interrupted."
    ).tag(config=True)

    def __init__(self, shell: Any, session: JupyterSession) -> None:
        super().__init__(shell)
        self.session = session
        session.revoke_on_interrupt = self.revoke_on_interrupt
        self.observe(self._sync_revoke, names="revoke_on_interrupt")

    def _sync_revoke(self, change: Any) -> None:
        self.session.revoke_on_interrupt = bool(change["new"])

    def _app(self, name: str | None) -> Any:
        try:
            return self.session.app(name)
        except NoApp as exc:
            raise UsageError(str(exc)) from None

    # %%task -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("--app", help="notebook variable holding the App (default: the newest App)")
    @argument("--name", help="task name (default: __main__.<function name>)")
    @argument("--queue", help="queue the task is sent to by default")
    @argument("--retries", type=int, help="max_retries")
    @argument("--bind", action="store_true", help="the function gets the task as `self`")
    @argument("--background", action="store_true", help="run this cell on a worker now")
    @cell_magic
    def task(self, line: str, cell: str) -> Any:
        """``%%task add(x, y)`` defines a task; ``%%task --background`` runs the cell."""
        try:
            signature, rest = split_signature(line)
        except SignatureError as exc:
            raise UsageError(str(exc)) from None
        args = parse_argstring(self.task, rest)
        app = self._app(args.app)
        options = {
            k: v for k, v in (("queue", args.queue), ("max_retries", args.retries)) if v is not None
        }
        count = self.shell.execution_count
        if args.background:
            return self._background(app, args, cell, count, options)
        if not signature:
            raise UsageError("%%task needs a signature, e.g. %%task add(x, y)")
        try:
            fn = build_function(
                signature,
                cell,
                self.shell.user_ns,
                filename=f"<task-cell-{count}>",
                bind=args.bind,
            )
        except SignatureError as exc:
            raise UsageError(str(exc)) from None
        task = app.task(fn, name=args.name, bind=args.bind, **options)
        self.shell.user_ns[fn.__name__] = task
        return None

    def _background(
        self, app: Any, args: Any, cell: str, count: int, options: dict[str, Any]
    ) -> Any:
        name = args.name or f"cell_{count}"
        try:
            fn = build_function(
                f"{name.rsplit('.', 1)[-1]}()",
                cell,
                self.shell.user_ns,
                filename=f"<task-cell-{count}>",
                return_last=True,
                bind=True,
            )
        except SignatureError as exc:
            raise UsageError(str(exc)) from None
        queue = options.pop("queue", None)
        task = app.task(fn, name=args.name or f"__main__.{name}", bind=True, **options)
        return task.apply_async(queue=queue)

    # %worker ------------------------------------------------------------------------------
    @magic_arguments()
    @argument("action", choices=["start", "stop", "status"])
    @argument("target", nargs="?", help="worker name (stop)")
    @argument("-c", "--concurrency", type=int, help="pool size")
    @argument("-P", "--pool", help="pool: threads or solo (processes where available)")
    @argument("-Q", "--queues", help="comma-separated queues to consume")
    @argument("--autoscale", help="MAX,MIN pool bounds")
    @argument("--name", help="worker name (NAME or NAME@host); one worker per name")
    @argument("--app", help="notebook variable holding the App")
    @argument("--all", action="store_true", help="stop: every worker of every known app")
    @line_magic
    def worker(self, line: str) -> Any:
        """``%worker start|stop|status``: run this app's workers in the kernel."""
        args = parse_argstring(self.worker, line)
        if args.action == "stop":
            return self._stop(args)
        app = self._app(args.app)
        if args.action == "status":
            return self._status(app)
        return self._start(app, args)

    def _start(self, app: Any, args: Any) -> Any:
        hostname = _hostname(args.name or args.target or _default_name(app))
        running = next((w for w in app.workers if w.hostname == hostname), None)
        if running is not None:
            print(f"{hostname} is already running; `%worker stop {hostname}` to change it")
            return running
        autoscale = None
        if args.autoscale:
            try:
                autoscale = tuple(int(x) for x in args.autoscale.split(","))
            except ValueError:
                raise UsageError("--autoscale takes MAX,MIN, e.g. --autoscale 8,2") from None
        try:
            worker = app.worker(
                concurrency=args.concurrency,
                pool=args.pool,
                queues=args.queues,
                hostname=hostname,
                autoscale=autoscale,
            )
            self.session.panel(worker)  # watching before the start: it times every step
            return worker.start()
        except (ValueError, NbqueueError) as exc:  # bad options, or a step that failed
            raise UsageError(f"the worker did not start: {exc}") from None

    def _stop(self, args: Any) -> None:
        if args.all:
            stopped = self.session.stop_workers(timeout=30.0)
        else:
            app = self._app(args.app)
            workers = app.workers
            if args.target:
                workers = [w for w in workers if args.target in (w.hostname, _short(w.hostname))]
            if not workers:
                print("no running workers" + (f" named {args.target}" if args.target else ""))
                return
            if len(workers) > 1:
                names = ", ".join(w.hostname for w in workers)
                raise UsageError(f"several workers run ({names}): name one, or use --all")
            workers[0].stop()
            self.session.refresh_panel(workers[0])
            stopped = [workers[0].hostname]
        print(f"stopped {', '.join(stopped) or 'nothing'}")

    def _status(self, app: Any) -> None:
        from IPython.display import display

        workers = app.workers
        if not workers:
            print(f"no workers running for app {app.main!r}; `%worker start` starts one")
        for worker in workers:
            display(worker)

    # %nbqueue -----------------------------------------------------------------------------
    @magic_arguments()
    @argument("command", choices=["inspect", "events", "peek", "purge", "monitor"])
    @argument("arg", nargs="?", help="inspect: the command; peek/purge: the queue")
    @argument("extra", nargs="*", help="inspect: the command's arguments (query_task IDs)")
    @argument("--app", help="notebook variable holding the App")
    @argument("--timeout", type=float, default=1.0, help="inspect: seconds to wait for replies")
    @argument("-d", "--destination", help="inspect: comma-separated worker names")
    @argument("-n", "--limit", type=int, help="peek: show at most this many messages")
    @argument("--broker", action="store_true", help="events: from the broker, every worker")
    @line_magic
    def nbqueue(self, line: str) -> Any:
        """``%nbqueue inspect CMD | events | monitor | peek QUEUE | purge QUEUE``."""
        args = parse_argstring(self.nbqueue, line)
        app = self._app(args.app)
        handler = getattr(self, f"_{args.command}")
        return handler(app, args)

    def _inspect(self, app: Any, args: Any) -> Any:
        command = args.arg or "ping"
        if command not in INSPECT_COMMANDS:
            raise UsageError(f"inspect {command!r}: use one of {', '.join(INSPECT_COMMANDS)}")
        options: dict[str, Any] = {"timeout": args.timeout}
        if args.destination:
            options["destination"] = [d.strip() for d in args.destination.split(",") if d]
        try:
            inspect = app.control.inspect(**options)
        except ImportError as exc:
            raise UsageError(f"remote control is not available in this build: {exc}") from None
        return getattr(inspect, command)(*args.extra)

    def _events(self, app: Any, args: Any) -> Any:
        if args.broker and not hasattr(type(app), "events"):
            raise UsageError("--broker needs the events receiver, not in this build")
        return self.session.view("broker-events" if args.broker else "events", app)

    def _monitor(self, app: Any, args: Any) -> Any:
        return self.session.view("monitor", app)

    def _peek(self, app: Any, args: Any) -> Any:
        from .queues import peek

        try:
            return peek(app, args.arg or app.conf.task_default_queue, args.limit)
        except NotImplementedError as exc:
            raise UsageError(str(exc)) from None

    def _purge(self, app: Any, args: Any) -> None:
        from .queues import purge

        queue = args.arg or app.conf.task_default_queue
        print(f"purged {purge(app, queue)} message(s) from {queue}")


def _default_name(app: Any) -> str:
    return app.main.strip("_") or "worker"


def _hostname(name: str) -> str:
    return name if "@" in name else f"{name}@{socket.gethostname()}"


def _short(hostname: str) -> str:
    return hostname.split("@", 1)[0]
