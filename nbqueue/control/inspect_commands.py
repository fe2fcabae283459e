"""Celery's read-only (inspect) commands, with Celery's names, arguments and reply shapes."""

from __future__ import annotations

import logging
import platform
import re
from datetime import timedelta
from importlib import metadata
from typing import Any

import kombu
from kombu.utils.url import maybe_sanitize_url

from .registry import Command, ControlContext, ok

__all__ = ["INSPECT_COMMANDS", "jsonable"]

logger = logging.getLogger(__name__)

_SECRET = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|DATABASE", re.IGNORECASE)
_MASK = "********"


def jsonable(value: Any) -> Any:
    """`value` made safe for a JSON reply: containers walked, the rest as str or repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    return repr(value)


def ping(ctx: ControlContext, **kwargs: Any) -> Any:
    """Ping worker(s)."""
    return ok("pong")


def stats(ctx: ControlContext, **kwargs: Any) -> dict[str, Any]:
    """Worker statistics: totals, pool, broker, prefetch, resource usage."""
    reply = dict(ctx.worker.statistics())
    reply["broker"] = _broker_info(ctx.worker)
    reply["rusage"] = _rusage()
    return jsonable(reply)


def _broker_info(worker: Any) -> dict[str, Any]:
    connection = getattr(worker.steps.get("connection"), "connection", None)
    if connection is None:
        return {}
    info = dict(connection.info())
    info.pop("password", None)
    return info


def _rusage() -> Any:
    try:
        import resource
    except ImportError:  # not on this platform
        return "N/A"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {name[3:]: getattr(usage, name) for name in dir(usage) if name.startswith("ru_")}


def active(ctx: ControlContext, safe: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Requests running now."""
    return [jsonable(r.info()) for r in list(ctx.worker.state.active.values())]


def reserved(ctx: ControlContext, **kwargs: Any) -> list[dict[str, Any]]:
    """Requests prefetched and waiting for a pool slot."""
    state = ctx.worker.state
    return [jsonable(r.info()) for r in list(state.reserved.values()) if r.id not in state.active]


def scheduled(ctx: ControlContext, **kwargs: Any) -> list[dict[str, Any]]:
    """ETA/countdown requests held until they are due."""
    return [_scheduled_info(r) for r in list(ctx.worker.state.scheduled.values())]


def _scheduled_info(request: Any) -> dict[str, Any]:
    return {
        "eta": request.eta.isoformat() if request.eta is not None else None,
        "priority": request.delivery_info.get("priority"),
        "request": jsonable(request.info()),
    }


def registered(
    ctx: ControlContext, taskinfoitems: Any = None, builtins: bool = False, **kwargs: Any
) -> list[str]:
    """Registered task names (``celery.*`` built-ins hidden), optionally with attributes."""
    tasks = ctx.app.tasks
    names = sorted(tasks) if builtins else tasks.user_tasks()
    items = list(taskinfoitems or ())
    settings = set(ctx.app.conf)
    return [_task_line(ctx.app.conf, settings, tasks[name], name, items) for name in names]


def _task_line(conf: Any, settings: set[str], task: Any, name: str, items: list[str]) -> str:
    fields = []
    for item in items:
        value = getattr(task, item, None)
        if value is None and f"task_{item}" in settings:  # the task defers to the setting
            value = conf[f"task_{item}"]
        if value is not None:
            fields.append(f"{item}={value}")
    return f"{name} [{' '.join(fields)}]" if fields else name


def revoked(ctx: ControlContext, **kwargs: Any) -> list[str]:
    """Ids this worker will never run."""
    return ctx.worker.state.revoked.as_list()


def active_queues(ctx: ControlContext, **kwargs: Any) -> list[dict[str, Any]]:
    """The queues consumed now, as kombu describes them."""
    tasks = ctx.worker.steps.get("tasks")
    queues = tasks.active_queues() if tasks is not None else []
    return [jsonable(q.as_dict(recurse=True)) for q in queues]


def conf(ctx: ControlContext, with_defaults: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Settings (only the changed ones unless `with_defaults`), secrets masked."""
    settings = ctx.app.conf
    values = dict(settings) if with_defaults else settings.changes()
    return {key: _censored(key, value) for key, value in values.items()}


def _censored(key: str, value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return maybe_sanitize_url(value)
    if value is not None and _SECRET.search(key):
        return _MASK
    return jsonable(value)


def report(ctx: ControlContext, **kwargs: Any) -> dict[str, str]:
    """A bug-report summary: software, platform, transport, non-default settings."""
    app = ctx.app
    connection = getattr(ctx.worker.steps.get("connection"), "connection", None)
    transport = connection.transport_cls if connection is not None else app.conf.broker_url
    settings = "\n".join(f"{k}: {v!r}" for k, v in conf(ctx).items())
    results = maybe_sanitize_url(str(app.conf.result_backend))
    return ok(
        f"\nsoftware -> nbqueue:{_version()} kombu:{kombu.__version__} "
        f"py:{platform.python_version()}\n"
        f"platform -> system:{platform.system()} arch:{platform.machine()} "
        f"imp:{platform.python_implementation()}\n"
        f"settings -> transport:{transport} results:{results}"
        f"\n\n{settings}\n"
    )


def _version() -> str:
    try:
        return metadata.version("nbqueue")
    except metadata.PackageNotFoundError:  # a source tree without metadata
        return "?"


def clock(ctx: ControlContext, **kwargs: Any) -> dict[str, int]:
    """The logical clock's value."""
    return {"clock": ctx.app.clock.value}


def hello(
    ctx: ControlContext, from_node: str, revoked: Any = None, **kwargs: Any
) -> dict[str, Any] | None:
    """Mingle: take the sender's revoked ids, answer with ours and our clock (not to self)."""
    if from_node == ctx.hostname:
        return None
    logger.info("%s: sync with %s", ctx.hostname, from_node)
    if revoked:  # a list (5.7) or a dict id → stamp (5.5): only the ids count
        ctx.worker.state.revoked.update(list(revoked))
    return {"revoked": ctx.worker.state.revoked.as_list(), "clock": ctx.app.clock.forward()}


def query_task(ctx: ControlContext, ids: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Where these ids are here: ``{id: [active|reserved|scheduled, info]}``."""
    if isinstance(ids, str):
        ids = [ids]
    state = ctx.worker.state
    found: dict[str, Any] = {}
    for task_id in ids or ():
        for where, table in (
            ("active", state.active),
            ("reserved", state.reserved),
            ("scheduled", state.scheduled),
        ):
            request = table.get(task_id)
            if request is not None:
                found[task_id] = [where, jsonable(request.info())]
                break
    return found


def _inspect(handler: Any, **meta: Any) -> Command:
    doc = (handler.__doc__ or "").strip().splitlines()
    return Command(handler.__name__, handler, type="inspect", help=doc[0] if doc else "", **meta)


INSPECT_COMMANDS: tuple[Command, ...] = (
    _inspect(ping, default_timeout=0.2),
    _inspect(stats),
    _inspect(active, alias="dump_active"),
    _inspect(reserved, alias="dump_reserved"),
    _inspect(scheduled, alias="dump_schedule"),
    _inspect(registered, alias="dump_tasks", variadic="taskinfoitems"),
    _inspect(revoked, alias="dump_revoked"),
    _inspect(active_queues),
    _inspect(conf, alias="dump_conf", args=(("with_defaults", bool),)),
    _inspect(report),
    _inspect(clock),
    _inspect(hello, visible=False, args=(("from_node", str),)),
    _inspect(query_task, variadic="ids"),
)
