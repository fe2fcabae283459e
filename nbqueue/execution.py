"""The one execution path: run a task for a message, store its state, apply what follows.

A worker's pool thread and ``Task.apply`` both call `run_task`, so an eager call behaves
like a worker run: the same request context, hooks, signals, state storage, callbacks,
chain steps and chord joins, in Celery's order (callbacks, then the next chain step,
then the stored result, then ``on_success`` and ``task_success``).

A worker passes a *guard* (see `RunGuard`): the window in which the task's own code runs
and may be interrupted by an exception raised from another thread (a time limit, a
``revoke(terminate=True)``). Injected exceptions derive from `Interrupt`, a
BaseException, so ``except Exception`` in task code cannot swallow them.
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
from .context import pop_request, push_request
from .exceptions import Ignore, Reject, Retry, TaskRevokedError, WorkerLostError
from .followups import apply_errbacks, dispatch_callbacks_and_chain, on_chord_part_return
from .protocol import TaskMessage, build_task_message, new_id
from .result import EagerResult, ResultBase
from .task import Context, Task, backoff_countdown

__all__ = [
    "HardTimeLimit",
    "Interrupt",
    "Outcome",
    "RunGuard",
    "Terminate",
    "apply_eagerly",
    "build_context",
    "finish_run",
    "format_traceback",
    "record_revoked",
    "run_task",
]

logger = logging.getLogger(__name__)

CoroutineRunner = Callable[[Any], Any]

#: states after which ``after_return`` is not called (Celery's IGNORE_STATES)
_NO_AFTER_RETURN = frozenset({states.IGNORED, states.RETRY, states.REJECTED})


class Interrupt(BaseException):
    """Base for exceptions a worker injects into a running task's thread (limits, terminate).

    Derives from BaseException so that ``except Exception`` in task code cannot swallow it.
    """


class HardTimeLimit(Interrupt):
    """Injected when the hard time limit passes; the run fails with `TimeLimitExceeded`."""


class Terminate(Interrupt):
    """Injected by ``revoke(terminate=True)``; the run ends REVOKED."""


class RunGuard:
    """The window in which a task's own code runs and may be interrupted from another thread.

    `run_task` arms it just before ``before_start`` and the task function, and disarms it
    when they return or raise. Another thread may inject an exception only while it is
    armed, holding `lock` (see `nbqueue.worker.Request.interrupt`). Disarming happens
    under the same lock *before* any point where CPython delivers a pending exception,
    and drops an exception injected but not yet raised, so none ever escapes the window.
    """

    __slots__ = ("abandoned", "armed", "injected", "lock", "thread_id")

    #: ``clear_pending(thread_id, None)``: a C function (no Python frame to interrupt)
    clear_pending: Any = None

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.armed = False
        self.injected = False
        #: set when the worker gave up on the run; its outcome was settled elsewhere
        self.abandoned = False
        self.thread_id = 0

    def interruption(self, exc: Interrupt) -> Outcome:
        """What an injected `exc` means for this run: a terminated run ends REVOKED."""
        if isinstance(exc, Terminate):
            return Outcome(states.REVOKED, exception=TaskRevokedError(str(exc) or "terminated"))
        return Outcome(states.FAILURE, exception=exc, traceback=format_traceback(exc))


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
        replaced_task_nesting=headers.get("replaced_task_nesting") or 0,
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


def format_traceback(exc: BaseException) -> str:
    """The traceback of `exc` as Celery stores it (a formatted string)."""
    return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))


def run_task(
    task: Task,
    message: TaskMessage,
    context: Context,
    *,
    store: bool = True,
    run_coroutine: CoroutineRunner | None = None,
    guard: RunGuard | None = None,
) -> Outcome:
    """Run `task` for `message` and record the outcome. Never raises for task errors.

    When the worker abandons the run (`guard.abandoned`), nothing is recorded here: the
    worker settled the outcome when it gave up (see `finish_run`).
    """
    task.push_request(context)
    push_request(context)
    try:
        task.app.signals.task_prerun.send(
            sender=task, task_id=context.id, task=task, args=context.args, kwargs=context.kwargs
        )
        started = time.perf_counter()
        outcome = _call(task, context, store, run_coroutine, guard)
        outcome.runtime = time.perf_counter() - started
        if guard is not None and guard.abandoned:
            return outcome
        _finish(task, context, outcome, store)
        return outcome
    finally:
        pop_request()
        task.pop_request()


def finish_run(task: Task, context: Context, outcome: Outcome, *, store: bool = True) -> None:
    """Record `outcome` for a run whose thread was abandoned (from another thread)."""
    task.push_request(context)
    push_request(context)
    try:
        _finish(task, context, outcome, store)
    finally:
        pop_request()
        task.pop_request()


def _finish(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    """Store the state, send what follows, call the hooks, in Celery's order."""
    state = outcome.state
    try:
        if state == states.SUCCESS:
            _on_success(task, ctx, outcome, store and not _ignore_result(task, ctx))
        elif state == states.RETRY:
            _on_retry(task, ctx, outcome, store)
        elif state == states.FAILURE:
            _on_failure(task, ctx, outcome, store and _store_errors(task, ctx))
        elif state == states.REJECTED and not outcome.requeue:
            _on_failure(task, ctx, outcome, store and _store_errors(task, ctx), hook=False)
        elif state == states.REVOKED:
            _on_revoked(task, ctx, outcome, store)
    finally:
        _after_return(task, ctx, outcome)


def _ignore_result(task: Task, ctx: Context) -> bool:
    if ctx.ignore_result is None:
        return bool(task.setting("ignore_result", "task_ignore_result"))
    return bool(ctx.ignore_result)


def _store_errors(task: Task, ctx: Context) -> bool:
    return not _ignore_result(task, ctx) or bool(
        task.setting("store_errors_even_if_ignored", "task_store_errors_even_if_ignored")
    )


def _call(
    task: Task,
    ctx: Context,
    store: bool,
    run_coroutine: CoroutineRunner | None,
    guard: RunGuard | None,
) -> Outcome:
    try:
        if store and task.setting("track_started", "task_track_started"):
            task.app.backend.store_result(
                ctx.id, {"pid": os.getpid(), "hostname": ctx.hostname}, states.STARTED, request=ctx
            )
        retval = _run_guarded(task, ctx, run_coroutine, guard)
    except Retry as exc:
        return Outcome(states.RETRY, exception=exc, traceback=format_traceback(exc))
    except Ignore:
        return Outcome(states.IGNORED)
    except Reject as exc:
        return Outcome(states.REJECTED, exception=exc, requeue=bool(exc.requeue))
    except Interrupt as exc:
        if guard is None:  # an eager call nested in a worker's run: the run handles it
            raise
        return guard.interruption(exc)
    except Exception as exc:
        return _failed(task, ctx, exc)
    return Outcome(states.SUCCESS, retval=retval)


def _failed(task: Task, ctx: Context, exc: Exception) -> Outcome:
    """What an exception out of the run means: a requeue after a lost process (when asked
    for), an automatic retry, or a failure."""
    if isinstance(exc, WorkerLostError):
        if _requeue_on_worker_lost(task):
            logger.warning("%s[%s]: %s; requeued (reject_on_worker_lost)", task.name, ctx.id, exc)
            return Outcome(states.REJECTED, exception=exc, requeue=True)
    else:
        retried = _maybe_autoretry(task, exc)
        if retried is not None:
            return Outcome(states.RETRY, exception=retried, traceback=format_traceback(exc))
    return Outcome(states.FAILURE, exception=exc, traceback=format_traceback(exc))


def _requeue_on_worker_lost(task: Task) -> bool:
    """Celery's rule: a late-acked task whose process died goes back to the queue when
    ``reject_on_worker_lost`` is on, rather than failing (beware tasks that always crash)."""
    return bool(task.setting("acks_late", "task_acks_late")) and bool(
        task.setting("reject_on_worker_lost", "task_reject_on_worker_lost")
    )


def _run_guarded(
    task: Task, ctx: Context, run_coroutine: CoroutineRunner | None, guard: RunGuard | None
) -> Any:
    """``before_start`` and the task itself, inside the guard's window."""
    try:
        if guard is not None:
            guard.thread_id = threading.get_ident()
            guard.armed = True
        task.before_start(ctx.id, ctx.args, ctx.kwargs)
        retval = task(*ctx.args, **ctx.kwargs)
        if inspect.isawaitable(retval):
            retval = (run_coroutine or _run_coroutine_in_thread)(retval)
        return retval
    finally:
        if guard is not None:  # disarm before any point that could raise (see RunGuard)
            with guard.lock:
                guard.armed = False
                if guard.injected:
                    guard.clear_pending(guard.thread_id, None)


def _maybe_autoretry(task: Task, exc: BaseException) -> Retry | None:
    """``autoretry_for``: turn a matching exception into a retry (or the final failure)."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return None
    options = dict(task.retry_kwargs)
    if task.retry_backoff:
        options["countdown"] = backoff_countdown(  # Celery's factor: a whole number >= 1
            task.request.retries,
            int(max(1.0, float(task.retry_backoff))),
            int(task.retry_backoff_max),
            task.retry_jitter,
        )
    try:
        task.retry(exc=exc, **options)
    except Retry as retry:
        return retry
    except Exception:  # retries exhausted (retry() re-raised `exc`), or the send failed
        return None
    return None


def _hook(task: Task, ctx: Context, name: str, *args: Any) -> None:
    """Call a task hook; an error in it is logged (the outcome is already recorded)."""
    try:
        getattr(task, name)(*args)
    except Exception:
        logger.exception("%s of %s[%s] raised", name, task.name, ctx.id)


def _on_success(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    app = task.app
    retval = outcome.retval
    dispatch_callbacks_and_chain(app, ctx, retval)
    if store:  # a returned result handle is stored as its tuple form, as Celery does
        value = retval.as_tuple() if isinstance(retval, ResultBase) else retval
        app.backend.store_result(ctx.id, value, states.SUCCESS, request=ctx)
    if ctx.chord and ctx.group:
        on_chord_part_return(app, ctx, states.SUCCESS, retval)
    _hook(task, ctx, "on_success", retval, ctx.id, ctx.args, ctx.kwargs)
    app.signals.task_success.send(sender=task, result=retval, runtime=outcome.runtime)


def _on_retry(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    signal = outcome.exception
    reason = getattr(signal, "exc", None)
    if store:
        task.app.backend.store_result(
            ctx.id, reason, states.RETRY, traceback=outcome.traceback, request=ctx
        )
    _hook(task, ctx, "on_retry", reason, ctx.id, ctx.args, ctx.kwargs, outcome.traceback)
    task.app.signals.task_retry.send(
        sender=task, request=ctx, reason=signal, einfo=outcome.traceback
    )


def _on_failure(task: Task, ctx: Context, outcome: Outcome, store: bool, hook: bool = True):
    app = task.app
    exc = outcome.exception
    if store:
        app.backend.store_result(
            ctx.id, exc, states.FAILURE, traceback=outcome.traceback, request=ctx
        )
    if ctx.chord and ctx.group:
        on_chord_part_return(app, ctx, states.FAILURE, exc)
    apply_errbacks(app, ctx, exc, outcome.traceback)
    if hook:
        _hook(task, ctx, "on_failure", exc, ctx.id, ctx.args, ctx.kwargs, outcome.traceback)
    app.signals.task_failure.send(
        sender=task,
        task_id=ctx.id,
        exception=exc,
        args=ctx.args,
        kwargs=ctx.kwargs,
        traceback=outcome.traceback,
        einfo=outcome.traceback,
    )


def _on_revoked(task: Task, ctx: Context, outcome: Outcome, store: bool) -> None:
    """Terminated while running: REVOKED, and a chord it belongs to learns of it."""
    app = task.app
    if store:
        app.backend.store_result(ctx.id, outcome.exception, states.REVOKED, request=ctx)
    if ctx.chord and ctx.group:
        on_chord_part_return(app, ctx, states.REVOKED, outcome.exception)


def record_revoked(task: Task, ctx: Context, reason: BaseException) -> None:
    """A run that never started was revoked (or expired): store it, tell its chord."""
    _on_revoked(
        task, ctx, Outcome(states.REVOKED, exception=reason), store=_store_errors(task, ctx)
    )


def _after_return(task: Task, ctx: Context, outcome: Outcome) -> None:
    value = outcome.retval if outcome.exception is None else outcome.exception
    if outcome.state not in _NO_AFTER_RETURN:
        _hook(
            task,
            ctx,
            "after_return",
            outcome.state,
            value,
            ctx.id,
            ctx.args,
            ctx.kwargs,
            outcome.traceback,
        )
    task.app.signals.task_postrun.send(
        sender=task,
        task_id=ctx.id,
        task=task,
        args=ctx.args,
        kwargs=ctx.kwargs,
        retval=value,
        state=outcome.state,
    )


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
        message = _eager_message(task, task_id, args, kwargs, retries, options)
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


def _eager_message(
    task: Task, task_id: str, args: Any, kwargs: Any, retries: int, options: dict[str, Any]
) -> TaskMessage:
    return build_task_message(
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


def _sig_list(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items]
