"""The one execution path: run a task for a message, store its state, apply what follows.

A worker's pool thread and ``Task.apply`` both call `run_task`, so an eager call behaves
like a worker run: the same request context, hooks, signals, state storage, callbacks,
chain steps and chord joins, in Celery's order (callbacks, then the next chain step,
then the stored result).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
import time
import traceback as tb_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import states
from .canvas import signature
from .context import pop_request, push_request
from .exceptions import ChordError, Ignore, Reject, Retry
from .protocol import TaskMessage, build_task_message, new_id
from .result import EagerResult
from .task import Context, Task, backoff_countdown

__all__ = ["Interrupt", "Outcome", "apply_eagerly", "build_context", "run_task"]

logger = logging.getLogger(__name__)

CoroutineRunner = Callable[[Any], Any]


class Interrupt(BaseException):
    """Base for exceptions a worker injects into a running task's thread (limits, terminate).

    Derives from BaseException so that ``except Exception`` in task code cannot swallow it.
    """


@dataclass
class Outcome:
    """How one run ended."""

    state: str
    retval: Any = None
    exception: BaseException | None = None
    traceback: str | None = None
    runtime: float = 0.0
    requeue: bool = False


def build_context(
    task: Task,
    message: TaskMessage,
    *,
    hostname: str | None,
    delivery_info: dict[str, Any] | None,
    is_eager: bool = False,
) -> Context:
    """The request context (``self.request``) for running `message`."""
    headers = message.headers
    embed = message.embed
    return Context(
        id=message.id,
        task=message.name,
        args=message.args,
        kwargs=message.kwargs,
        retries=headers.get("retries") or 0,
        eta=headers.get("eta"),
        expires=headers.get("expires"),
        is_eager=is_eager,
        called_directly=False,
        delivery_info=delivery_info,
        hostname=hostname,
        root_id=headers.get("root_id") or message.id,
        parent_id=headers.get("parent_id"),
        group=headers.get("group"),
        group_index=headers.get("group_index"),
        chord=embed.get("chord"),
        chain=embed.get("chain"),
        callbacks=embed.get("callbacks"),
        errbacks=embed.get("errbacks"),
        reply_to=message.properties.get("reply_to"),
        correlation_id=message.properties.get("correlation_id"),
        origin=headers.get("origin"),
        headers=headers,
        timelimit=message.timelimit,
        ignore_result=headers.get("ignore_result"),
        shadow=headers.get("shadow"),
        stamps=headers.get("stamps"),
    )


def _run_coroutine_in_thread(coro: Any) -> Any:
    """Run a coroutine on a fresh event loop in a helper thread (never the caller's loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="nbqueue-eager-async", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _format_tb(exc: BaseException) -> str:
    return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))


def run_task(
    task: Task,
    message: TaskMessage,
    context: Context,
    *,
    store: bool = True,
    run_coroutine: CoroutineRunner | None = None,
) -> Outcome:
    """Run `task` for `message` and record the outcome. Never raises for task errors."""
    app = task.app
    ignore_result = context.ignore_result
    if ignore_result is None:
        ignore_result = task.setting("ignore_result", "task_ignore_result")
    task.push_request(context)
    push_request(context)
    started = time.perf_counter()
    app.signals.task_prerun.send(
        sender=task, task_id=context.id, task=task, args=context.args, kwargs=context.kwargs
    )
    outcome = Outcome(states.FAILURE)
    try:
        outcome = _call(task, context, store, run_coroutine)
        outcome.runtime = time.perf_counter() - started
        if outcome.state == states.SUCCESS:
            _on_success(task, context, outcome, store and not ignore_result)
        elif outcome.state == states.RETRY:
            _on_retry(task, context, outcome, store)
        elif outcome.state == states.FAILURE:
            keep = store and (
                not ignore_result
                or task.setting("store_errors_even_if_ignored", "task_store_errors_even_if_ignored")
            )
            _on_failure(task, context, outcome, keep)
    finally:
        _after_return(task, context, outcome)
        pop_request()
        task.pop_request()
    return outcome


def _call(task: Task, ctx: Context, store: bool, run_coroutine: CoroutineRunner | None) -> Outcome:
    app = task.app
    try:
        if store and task.setting("track_started", "task_track_started"):
            app.backend.store_result(
                ctx.id, {"pid": os.getpid(), "hostname": ctx.hostname}, states.STARTED, request=ctx
            )
        task.before_start(ctx.id, ctx.args, ctx.kwargs)
        retval = task(*ctx.args, **ctx.kwargs)
        if inspect.isawaitable(retval):
            retval = (run_coroutine or _run_coroutine_in_thread)(retval)
    except Retry as exc:
        return Outcome(states.RETRY, exception=exc, traceback=_format_tb(exc))
    except Ignore:
        return Outcome(states.IGNORED)
    except Reject as exc:
        return Outcome(states.REJECTED, exception=exc, requeue=bool(exc.requeue))
    except (Exception, Interrupt) as exc:
        retried = _maybe_autoretry(task, exc)
        if retried is not None:
            return Outcome(states.RETRY, exception=retried, traceback=_format_tb(exc))
        return Outcome(states.FAILURE, exception=exc, traceback=_format_tb(exc))
    return Outcome(states.SUCCESS, retval=retval)


def _maybe_autoretry(task: Task, exc: BaseException) -> Retry | None:
    """``autoretry_for``: turn a matching exception into a retry (or the final failure)."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return None
    options = dict(task.retry_kwargs)
    if task.retry_backoff:
        options["countdown"] = backoff_countdown(
            task.request.retries, task.retry_backoff, task.retry_backoff_max, task.retry_jitter
        )
    try:
        task.retry(exc=exc, **options)
    except Retry as retry:
        return retry
    except Exception:  # retries exhausted: retry() re-raised `exc`
        return None
    return None


def _on_success(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    app = task.app
    retval = outcome.retval
    for callback in ctx.callbacks or ():
        _apply_safely(app, callback, (retval,), ctx)
    if ctx.chain:
        rest = list(ctx.chain)
        step = rest.pop()
        _apply_safely(app, step, (retval,), ctx, chain=rest or None)
    task.on_success(retval, ctx.id, ctx.args, ctx.kwargs)
    if store:
        app.backend.store_result(ctx.id, retval, states.SUCCESS, request=ctx)
    if ctx.chord and ctx.group:
        on_chord_part_return(app, ctx, states.SUCCESS, retval)
    app.signals.task_success.send(sender=task, result=retval)


def _on_retry(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    exc = outcome.exception
    reason = getattr(exc, "exc", None) or exc
    if store:
        task.app.backend.store_result(
            ctx.id, reason, states.RETRY, traceback=outcome.traceback, request=ctx
        )
    task.on_retry(reason, ctx.id, ctx.args, ctx.kwargs, outcome.traceback)
    task.app.signals.task_retry.send(
        sender=task, request=ctx, reason=reason, einfo=outcome.traceback
    )


def _on_failure(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    app = task.app
    exc = outcome.exception
    if store:
        app.backend.store_result(
            ctx.id, exc, states.FAILURE, traceback=outcome.traceback, request=ctx
        )
    _apply_errbacks(app, ctx, exc, outcome.traceback)
    if ctx.chord and ctx.group:
        on_chord_part_return(app, ctx, states.FAILURE, exc)
    task.on_failure(exc, ctx.id, ctx.args, ctx.kwargs, outcome.traceback)
    app.signals.task_failure.send(
        sender=task,
        task_id=ctx.id,
        exception=exc,
        args=ctx.args,
        kwargs=ctx.kwargs,
        traceback=outcome.traceback,
        einfo=outcome.traceback,
    )


def _after_return(task: Task, ctx: Context, outcome: Outcome) -> None:
    try:
        task.after_return(
            outcome.state,
            outcome.retval if outcome.exception is None else outcome.exception,
            ctx.id,
            ctx.args,
            ctx.kwargs,
            outcome.traceback,
        )
    except Exception:
        logger.exception("after_return of %s[%s] raised", task.name, ctx.id)
    task.app.signals.task_postrun.send(
        sender=task,
        task_id=ctx.id,
        task=task,
        args=ctx.args,
        kwargs=ctx.kwargs,
        retval=outcome.retval if outcome.exception is None else outcome.exception,
        state=outcome.state,
    )


def _apply_safely(app: Any, sig_data: Any, args: tuple[Any, ...], ctx: Context, **opts: Any):
    """Send a follow-up (callback, chain step); a failure to send is logged, not raised."""
    try:
        sig = signature(sig_data, app=app)
        return sig.apply_async(args, parent_id=ctx.id, root_id=ctx.root_id, **opts)
    except Exception:
        logger.exception("%s[%s]: could not send follow-up %r", ctx.task, ctx.id, sig_data)
        return None


def _apply_errbacks(app: Any, ctx: Context, exc: BaseException | None, traceback: str | None):
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
            _apply_safely(app, sig, (ctx.id,), ctx)


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
    parts = app.backend.add_chord_part(ctx.group, ctx.id, ctx.group_index, state, value)
    if parts is None:
        return
    body = signature(ctx.chord, app=app)
    failed = next(((tid, val) for tid, st, val in parts if st != states.SUCCESS), None)
    if failed is None:
        try:
            body.apply_async(([val for _, _, val in parts],), parent_id=ctx.id, root_id=ctx.root_id)
        finally:
            app.backend.on_chord_body_applied(ctx.group)
        return
    task_id, reason = failed
    error = ChordError(f"Dependency {task_id} raised {reason!r}")
    body_id = body.id or new_id()
    app.backend.store_result(body_id, error, states.FAILURE, traceback=None)
    failed_ctx = Context(
        id=body_id, task=body.task, root_id=ctx.root_id, errbacks=body.options.get("link_error")
    )
    _apply_errbacks(app, failed_ctx, error, None)


def apply_eagerly(
    task: Task,
    args: Any,
    kwargs: dict[str, Any],
    *,
    task_id: str | None = None,
    throw: bool | None = None,
    **options: Any,
) -> EagerResult:
    """``Task.apply``: build the real message, then run it here through `run_task`."""
    app = task.app
    task_id = task_id or new_id()
    retries = int(options.pop("retries", 0) or 0)
    store = app.conf.task_store_eager_result
    while True:
        message = build_task_message(
            task.name,
            task_id,
            list(args),
            dict(kwargs),
            retries=retries,
            callbacks=_sig_list(options.get("link")),
            errbacks=_sig_list(options.get("link_error")),
            chain=options.get("chain"),
            group_id=options.get("group_id"),
            group_index=options.get("group_index"),
            chord=options.get("chord"),
            root_id=options.get("root_id"),
            parent_id=options.get("parent_id"),
        )
        ctx = build_context(
            task,
            message,
            hostname=socket.gethostname(),
            delivery_info={"is_eager": True},
            is_eager=True,
        )
        outcome = run_task(task, message, ctx, store=store)
        if outcome.state != states.RETRY:
            break
        retries += 1
        limit = task.max_retries
        if limit is not None and retries > limit:
            reason = getattr(outcome.exception, "exc", None) or outcome.exception
            outcome = Outcome(states.FAILURE, exception=reason, traceback=outcome.traceback)
            break
    if throw is None:
        throw = app.conf.task_eager_propagates
    if throw and outcome.state == states.FAILURE and outcome.exception is not None:
        raise outcome.exception
    value = outcome.retval if outcome.exception is None else outcome.exception
    return EagerResult(
        task_id, value, outcome.state, app=app, traceback=outcome.traceback, task_name=task.name
    )


def _sig_list(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items]
