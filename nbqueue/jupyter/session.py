"""What ``%load_ext nbqueue`` sets up in one shell: app discovery, output routing, rich
display of results and workers, revoke-on-interrupt, and stopping workers at shutdown.

Which app the magics use: ``--app NAME`` (a variable of the notebook), else the App that
appeared in the notebook's namespace most recently (apps are discovered after each cell,
in the order their variables were bound).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import Any

from ..app import App
from ..result import ResultBase
from ..worker import Worker
from .output import OutputRouter

__all__ = ["JupyterSession", "NoApp"]

logger = logging.getLogger(__name__)


class NoApp(LookupError):
    """No App to act on: none in the namespace, or ``--app`` names something else."""


class JupyterSession:
    """The extension's state for one IPython shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.router = OutputRouter(shell)
        self._apps: list[weakref.ref[App]] = []
        #: whether interrupting a cell revokes the tasks it sent (``%config`` on the magics)
        self.revoke_on_interrupt = False
        self._formatters: list[type] = []
        self._panels: weakref.WeakKeyDictionary[Worker, Any] = weakref.WeakKeyDictionary()
        #: one live monitor and event log per app (re-running the magic shows the same one)
        self._views: dict[tuple[str, int], Any] = {}

    # install / uninstall ------------------------------------------------------------------
    def install(self) -> None:
        events = self.shell.events
        events.register("pre_run_cell", self._pre_run_cell)
        events.register("post_run_cell", self._post_run_cell)
        formatter = self.shell.display_formatter.mimebundle_formatter
        for cls, make in ((ResultBase, _progress_bundle), (Worker, self._panel_bundle)):
            formatter.for_type(cls, make)
            self._formatters.append(cls)
        self.shell.observe(self._on_exit, names="exit_now")
        self.discover()

    def uninstall(self) -> None:
        events = self.shell.events
        events.unregister("pre_run_cell", self._pre_run_cell)
        events.unregister("post_run_cell", self._post_run_cell)
        formatter = self.shell.display_formatter.mimebundle_formatter
        for cls in self._formatters:
            formatter.pop(cls, None)
        self._formatters.clear()
        self.shell.unobserve(self._on_exit, names="exit_now")
        self.router.detach_all()
        for view in [*self._panels.values(), *self._views.values()]:
            view.close()
        self._panels.clear()
        self._views.clear()

    # apps ---------------------------------------------------------------------------------
    @property
    def apps(self) -> list[App]:
        """Known apps, oldest first."""
        return [app for app in (ref() for ref in self._apps) if app is not None]

    def remember(self, app: App) -> App:
        """Know `app` (route its output, stop its workers at shutdown); newest last."""
        if not any(known is app for known in self.apps):
            self._apps.append(weakref.ref(app))
            self.router.attach(app)
        return app

    def discover(self) -> None:
        """Remember every App bound in the notebook namespace."""
        for value in list(self.shell.user_ns.values()):
            if isinstance(value, App):
                self.remember(value)

    def app(self, name: str | None = None) -> App:
        """The app named by `name` (a notebook variable), else the newest one in the namespace."""
        ns = self.shell.user_ns
        if name:
            value = ns.get(name)
            if not isinstance(value, App):
                raise NoApp(f"--app {name}: no nbqueue App is bound to {name!r} in the notebook")
            return self.remember(value)
        self.discover()
        in_ns = {id(v) for v in ns.values() if isinstance(v, App)}
        for app in reversed(self.apps):
            if id(app) in in_ns:
                return app
        raise NoApp(
            "no nbqueue App in the notebook: create one (app = nbqueue.App('demo')) "
            "or pass --app NAME"
        )

    # cell events --------------------------------------------------------------------------
    def _pre_run_cell(self, info: Any = None) -> None:
        self.router.new_cell()

    def _post_run_cell(self, result: Any = None) -> None:
        self.discover()
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, KeyboardInterrupt) and self.revoke_on_interrupt:
            self.revoke(self.router.sent_by_cell)

    def revoke(self, task_ids: list[str]) -> int:
        """Revoke `task_ids` on every known app's workers; returns how many ids were revoked."""
        if not task_ids:
            return 0
        for app in self.apps:
            for worker in app.workers:
                worker.revoke(list(task_ids))
            # without remote control in this build, the in-process workers above are all
            with contextlib.suppress(ImportError):
                app.control.revoke(list(task_ids))
        print(f"nbqueue: revoked {len(task_ids)} task(s) sent by the interrupted cell")
        return len(task_ids)

    def panel(self, worker: Worker) -> Any:
        """The one live panel of `worker` (every display of it shows the same widgets)."""
        from .panel import WorkerPanel

        panel = self._panels.get(worker)
        if panel is None:
            panel = self._panels[worker] = WorkerPanel(worker)
        return panel

    def _panel_bundle(self, worker: Worker) -> dict[str, Any]:
        panel = self.panel(worker)
        panel.refresh()
        return panel._repr_mimebundle_()

    def refresh_panel(self, worker: Worker) -> None:
        """Redraw `worker`'s panel, if it was shown, at once."""
        panel = self._panels.get(worker)
        if panel is not None:
            panel.refresh()

    def view(self, kind: str, app: App) -> Any:
        """The app's one live ``"monitor"``, ``"events"`` or ``"broker-events"`` view."""
        from .feeds import receiver_feed
        from .monitor import EventLogView, MonitorView

        key = (kind, id(app))
        view = self._views.get(key)
        if view is None or view.app is not app:
            if kind == "monitor":
                view = MonitorView(app)
            elif kind == "broker-events":
                view = EventLogView(app, feed=receiver_feed(app))
            else:
                view = EventLogView(app)
            self._views[key] = view
        return view

    # shutdown -----------------------------------------------------------------------------
    def _on_exit(self, change: Any) -> None:
        if change["new"]:
            self.stop_workers(timeout=3.0)

    def stop_workers(self, timeout: float) -> list[str]:
        """Stop every known app's workers at once (warm: unstarted messages go back)."""
        workers = [w for app in self.apps for w in app.workers]
        threads = [
            threading.Thread(target=w.stop, name=f"nbqueue-{w.hostname}-shutdown", daemon=True)
            for w in workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
        for worker in workers:
            self.refresh_panel(worker)
        return [w.hostname for w in workers]


def _progress_bundle(result: ResultBase) -> dict[str, Any] | None:
    from ..result import EagerResult
    from .progress import ProgressView

    if isinstance(result, EagerResult):
        return None  # already known: its plain HTML says it all
    return ProgressView(result)._repr_mimebundle_()
