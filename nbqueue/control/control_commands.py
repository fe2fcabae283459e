"""Celery's control commands (they change the worker), with Celery's reply texts.

Handlers run in the worker's loop thread and call the worker's control surface
(`Worker.revoke`, `set_rate_limit`, `add_consumer`, ...) or the step that owns the
feature (``events``, ``gossip``, ``autoscaler``, the pool).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .. import states
from ..bootsteps import RUNNING
from ..exceptions import NotRegistered, TaskRevokedError
from .registry import NO_REPLY, Command, ControlContext, nok, ok

__all__ = ["CONTROL_COMMANDS", "running_step"]

logger = logging.getLogger(__name__)

#: stored states a revoke overwrites with REVOKED (others belong to a worker running it)
_REVOCABLE = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")


def running_step(worker: Any, name: str) -> Any:
    """The worker's step called `name` if it is running, else None."""
    for blueprint in (worker.worker_blueprint, worker.consumer_blueprint):
        if name in blueprint.steps and blueprint.state_of(name) == RUNNING:
            return blueprint.steps[name]
    return None


# revoking ---------------------------------------------------------------------------------
def revoke(
    ctx: ControlContext, task_id: Any, terminate: bool = False, signal: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """Never run these ids here; with `terminate`, also stop them if running."""
    ids = [task_id] if isinstance(task_id, str) else list(task_id or ())
    worker = ctx.worker
    known = {**worker.state.scheduled, **worker.state.reserved, **worker.state.active}
    worker.revoke(ids, terminate=terminate, signal=signal or "SIGTERM")
    _store_revoked(ctx, [i for i in ids if i not in worker.state.active])
    if terminate:
        found = [i for i in ids if i in known]
        return ok(f"terminate: {', '.join(found)}" if found else "terminate: tasks unknown")
    logger.info("%s: tasks flagged as revoked: %s", ctx.hostname, ", ".join(ids))
    return ok(f"tasks {set(ids)} flagged as revoked")


def _store_revoked(ctx: ControlContext, ids: list[str]) -> None:
    """Celery 5.7: waiting tasks are marked REVOKED in the backend at once."""
    backend = ctx.app.backend
    for task_id in ids:
        try:
            if backend.get_meta(task_id)["status"] in _REVOCABLE:
                backend.store_result(task_id, TaskRevokedError("revoked"), states.REVOKED)
        except Exception as exc:
            logger.warning("could not mark task %s as revoked in the backend: %r", task_id, exc)


def terminate(ctx: ControlContext, signal: Any, task_id: Any, **kwargs: Any) -> dict[str, Any]:
    """Revoke and stop these ids if they are running."""
    return revoke(ctx, task_id, terminate=True, signal=signal)


# limits -----------------------------------------------------------------------------------
def _check_rate(value: Any) -> None:
    if value in (None, "", 0) or isinstance(value, (int, float)):
        return
    if not _RATE.match(str(value)):
        raise ValueError(f"{value!r} is not a rate like 10/s, 100/m or 1000/h")


def rate_limit(ctx: ControlContext, task_name: str, rate_limit: Any, **kwargs: Any) -> Any:
    """Change a task type's rate limit on this worker (``None`` or ``0`` lifts it)."""
    try:
        _check_rate(rate_limit)
    except ValueError as exc:
        return nok(f"Invalid rate limit string: {exc!r}")
    try:
        ctx.worker.set_rate_limit(task_name, rate_limit or None)
    except NotRegistered:
        logger.error("%s: rate limit for unknown task %s", ctx.hostname, task_name)
        return nok("unknown task")
    if not rate_limit:
        return ok("rate limit disabled successfully")
    return ok("new rate limit set successfully")


def time_limit(
    ctx: ControlContext, task_name: str | None = None, hard: Any = None, soft: Any = None, **_: Any
) -> Any:
    """Change a task type's hard and soft time limits (seconds) on this worker."""
    try:
        ctx.worker.set_time_limit(
            task_name,
            None if hard is None else float(hard),
            None if soft is None else float(soft),
        )
    except NotRegistered:
        logger.error("%s: time limit for unknown task %s", ctx.hostname, task_name)
        return nok("unknown task")
    return ok("time limits set successfully")


# the pool ---------------------------------------------------------------------------------
def pool_grow(ctx: ControlContext, n: int = 1, **kwargs: Any) -> Any:
    """Add `n` threads to the pool."""
    return _resize(ctx, int(n), "grow")


def pool_shrink(ctx: ControlContext, n: int = 1, **kwargs: Any) -> Any:
    """Remove `n` threads from the pool."""
    return _resize(ctx, int(n), "shrink")


def _resize(ctx: ControlContext, n: int, how: str) -> Any:
    worker = ctx.worker
    if running_step(worker, "autoscaler") is not None:
        return nok(f"pool_{how} is not supported with autoscale. Adjust autoscale range instead.")
    pool = worker.steps["pool"].pool
    resize = getattr(pool, how, None)
    if resize is None:
        return nok(f"the {worker.options.pool} pool cannot {how}")
    resize(n)
    delta = n * worker.options.prefetch_multiplier
    worker.steps["tasks"].update_qos(delta if how == "grow" else -delta)
    return ok(f"pool will {how}")


def autoscale(ctx: ControlContext, max: Any = None, min: Any = None, **kwargs: Any) -> Any:
    """Change the autoscaler's range (``max``, ``min``)."""
    step = running_step(ctx.worker, "autoscaler")
    scaler = getattr(step, "autoscaler", step)
    if scaler is None or not hasattr(scaler, "update"):
        raise ValueError("Autoscale not enabled")
    max_, min_ = scaler.update(max, min)
    return ok(f"autoscale now max={max_} min={min_}")


# the worker -------------------------------------------------------------------------------
def shutdown(ctx: ControlContext, msg: str = "Got shutdown from remote", **kwargs: Any) -> Any:
    """Stop the worker (warm); sends no reply, like Celery."""
    logger.warning("%s: %s", ctx.hostname, msg)
    ctx.worker.stop_soon()
    return NO_REPLY


def add_consumer(
    ctx: ControlContext,
    queue: str,
    exchange: str | None = None,
    exchange_type: str | None = None,
    routing_key: str | None = None,
    **options: Any,
) -> Any:
    """Start consuming another queue."""
    ctx.worker.add_consumer(queue, exchange, exchange_type or "direct", routing_key)
    return ok(f"add consumer {queue}")


def cancel_consumer(ctx: ControlContext, queue: str, **_: Any) -> Any:
    """Stop consuming a queue."""
    ctx.worker.cancel_consumer(queue)
    return ok(f"no longer consuming from {queue}")


# events and gossip ------------------------------------------------------------------------
def enable_events(ctx: ControlContext, **kwargs: Any) -> Any:
    """Send task events from now on."""
    events = running_step(ctx.worker, "events")
    if events is None:
        return nok("event dispatcher unavailable")
    changed = events.set_task_events(True)
    return ok("task events enabled" if changed else "task events already enabled")


def disable_events(ctx: ControlContext, **kwargs: Any) -> Any:
    """Stop sending task events."""
    events = running_step(ctx.worker, "events")
    if events is None:
        return nok("event dispatcher unavailable")
    changed = events.set_task_events(False)
    return ok("task events disabled" if changed else "task events already disabled")


def heartbeat(ctx: ControlContext, **kwargs: Any) -> None:
    """Send a worker-heartbeat event now (event receivers ask for one when they start)."""
    events = running_step(ctx.worker, "events")
    if events is not None:
        events.send("worker-heartbeat", freq=5, **events.software_info)


def election(ctx: ControlContext, id: str, topic: str, action: Any = None, **kwargs: Any) -> None:
    """Take part in an election among the workers alive (see the gossip step)."""
    gossip = running_step(ctx.worker, "gossip")
    if gossip is not None:
        gossip.election(id, topic, action)


def _control(handler: Any, **meta: Any) -> Command:
    doc = (handler.__doc__ or "").strip().splitlines()
    return Command(handler.__name__, handler, type="control", help=doc[0] if doc else "", **meta)


CONTROL_COMMANDS: tuple[Command, ...] = (
    _control(revoke, variadic="task_id", signature="[id1 [id2 [... [idN]]]]"),
    _control(
        terminate,
        variadic="task_id",
        args=(("signal", str),),
        signature="<signal> [id1 [id2 [... [idN]]]]",
    ),
    _control(
        rate_limit,
        args=(("task_name", str), ("rate_limit", str)),
        signature="<task_name> <rate_limit (e.g., 5/s | 5/m | 5/h)>",
    ),
    _control(
        time_limit,
        args=(("task_name", str), ("soft", float), ("hard", float)),
        signature="<task_name> <soft_secs> [hard_secs]",
    ),
    _control(pool_grow, args=(("n", int),), signature="[N=1]"),
    _control(pool_shrink, args=(("n", int),), signature="[N=1]"),
    _control(autoscale, args=(("max", int), ("min", int)), signature="[max [min]]"),
    _control(shutdown),
    _control(
        add_consumer,
        args=(("queue", str), ("exchange", str), ("exchange_type", str), ("routing_key", str)),
        signature="<queue> [exchange [type [routing_key]]]",
    ),
    _control(cancel_consumer, args=(("queue", str),), signature="<queue>"),
    _control(enable_events),
    _control(disable_events),
    _control(heartbeat),
    _control(election),
)
