"""What follows a run: callbacks (``link``), the next chain step, errbacks, chord joins.

Sent the way Celery's worker sends them (``celery/app/trace.py``, ``backends/base.py``):
several callbacks travel as one group, the chain's next step is the *last* element of
``embed.chain``, errbacks are called inline when they take ``(request, exc, traceback)``
and sent with the failed task's id otherwise, and the last header result of a chord in
runs the body with the results in header order. A follow-up that cannot be sent is
logged; it never fails the task that already ran.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from . import states
from .canvas import Signature, group, signature
from .exceptions import ChordError
from .protocol import new_id
from .task import Context, Task

__all__ = ["apply_errbacks", "dispatch_callbacks_and_chain", "on_chord_part_return"]

logger = logging.getLogger(__name__)


def _options(app: Any, ctx: Context) -> dict[str, Any]:
    """``parent_id``/``root_id`` (and the priority when inherited) for a follow-up."""
    options: dict[str, Any] = {"parent_id": ctx.id, "root_id": ctx.root_id or ctx.id}
    if app.conf.task_inherit_parent_priority:
        priority = (ctx.delivery_info or {}).get("priority")
        if priority is not None:
            options["priority"] = priority
    return options


def _send(sig: Signature, args: tuple[Any, ...], ctx: Context, **options: Any) -> Any:
    try:
        return sig.apply_async(args, **options)
    except Exception:
        logger.exception("%s[%s]: could not send follow-up %r", ctx.task, ctx.id, sig)
        return None


def dispatch_callbacks_and_chain(app: Any, ctx: Context, retval: Any) -> None:
    """Send `ctx`'s callbacks with `retval`, then the next step of its chain."""
    options = _options(app, ctx)
    callbacks = [signature(c, app=app) for c in ctx.callbacks or ()]
    if len(callbacks) == 1:
        _send(callbacks[0], (retval,), ctx, **options)
    elif callbacks:
        for sig in (c for c in callbacks if isinstance(c, group)):
            _send(sig, (retval,), ctx, **options)
        plain = [c for c in callbacks if not isinstance(c, group)]
        if plain:
            _send(group(plain, app=app), (retval,), ctx, **options)
    if ctx.chain:
        rest = list(ctx.chain)
        step = signature(rest.pop(), app=app)
        _send(step, (retval,), ctx, chain=rest or None, **options)


def apply_errbacks(app: Any, ctx: Context, exc: BaseException | None, traceback: str | None):
    """Errbacks: called inline as ``(request, exc, traceback)`` when registered here and
    taking more than one argument (Celery's rule); otherwise sent with the failed task id."""
    for errback in ctx.errbacks or ():
        sig = signature(errback, app=app)
        task = app.tasks.get(sig.task)
        if task is not None and _positional_count(task) > 1:
            try:
                sig(ctx, exc, traceback)
            except Exception:
                logger.exception("errback %r for %s[%s] raised", sig, ctx.task, ctx.id)
        else:
            _send(sig, (ctx.id,), ctx, **_options(app, ctx))


def _positional_count(task: Task) -> int:
    try:
        params = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 3
    return sum(1 for p in params if p.kind in kinds)


def on_chord_part_return(app: Any, ctx: Context, state: str, value: Any) -> None:
    """Record one header result; the last one in runs the body (or fails it)."""
    try:
        parts = app.backend.add_chord_part(ctx.group, ctx.id, ctx.group_index, state, value)
    except Exception:
        logger.exception("%s[%s]: could not record its chord result", ctx.task, ctx.id)
        return
    if parts is None:
        return
    body = signature(ctx.chord, app=app)
    failed = next(((tid, st, val) for tid, st, val in parts if st != states.SUCCESS), None)
    if failed is None:
        try:
            _send(body, ([val for _, _, val in parts],), ctx, parent_id=ctx.id, root_id=ctx.root_id)
        finally:  # a backend that holds a claim on the join releases it now (Redis)
            applied = getattr(app.backend, "on_chord_body_applied", None)
            if applied is not None:
                applied(ctx.group)
        return
    _fail_chord_body(app, ctx, body, failed)


def _fail_chord_body(app: Any, ctx: Context, body: Signature, failed: tuple[str, str, Any]):
    """A header task failed: the body fails with `ChordError` and its errbacks run."""
    task_id, _, reason = failed
    error = ChordError(f"Dependency {task_id} raised {reason!r}")
    body_id = body.id or new_id()
    failed_ctx = Context(
        id=body_id,
        task=body.task,
        root_id=ctx.root_id,
        parent_id=ctx.id,
        group=body.options.get("group_id"),
        errbacks=body.options.get("link_error"),
    )
    app.backend.store_result(body_id, error, states.FAILURE, traceback=None, request=failed_ctx)
    apply_errbacks(app, failed_ctx, error, None)
