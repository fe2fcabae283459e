"""Tasks: the `Task` class ``@app.task`` builds, and the request context a run sees."""

from __future__ import annotations

import difflib
import inspect
import logging
import random
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import states
from .exceptions import MaxRetriesExceededError, Reject, Retry
from .protocol import TaskHeaders

if TYPE_CHECKING:
    from .canvas import Signature
    from .result import AsyncResult

__all__ = ["Context", "Task", "backoff_countdown", "is_importable"]

_MISSING = object()

logger = logging.getLogger(__name__)


class Context:
    """``self.request`` inside a running task: the message's fields and where it came from."""

    id: str | None = None
    task: str | None = None
    args: Any = ()
    kwargs: Any = None
    retries: int = 0
    eta: str | None = None
    expires: str | None = None
    is_eager: bool = False
    called_directly: bool = True
    delivery_info: dict[str, Any] | None = None
    hostname: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    chord: dict[str, Any] | None = None
    chain: list[dict[str, Any]] | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    origin: str | None = None
    headers: dict[str, Any] | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    ignore_result: bool = False
    shadow: str | None = None
    stamps: dict[str, Any] | None = None
    replaced_task_nesting: int = 0
    #: ``emit(type, task_id, **fields)`` of the worker running the task (None elsewhere)
    _events: Any = None

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.children: list[Any] = []

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"<Context {self.task}[{self.id}]>"


def backoff_countdown(
    retries: int, factor: bool | float, maximum: float, jitter: bool, rng: Any = random
) -> float:
    """Exponential backoff as Celery computes it: ``factor * 2**retries``, capped, and with
    full jitter a random whole number of seconds from 0 to that."""
    base = 1 if factor is True else factor
    countdown = min(maximum, base * (2**retries))
    if jitter:
        countdown = rng.randrange(int(countdown) + 1)
    return max(0.0, float(countdown))


def _positional_bounds(signature: inspect.Signature | None) -> tuple[int, int] | None:
    """(required, allowed) positional counts when the parameters are all plain positional."""
    if signature is None:
        return None
    params = list(signature.parameters.values())
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind not in plain for p in params):
        return None
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return required, len(params)


def is_importable(fn: Callable[..., Any]) -> bool:
    """Whether another process could import `fn` by module and name (else: ship it by value)."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module_name or module_name == "__main__" or "<" in qualname:
        return False
    module = sys.modules.get(module_name)
    return module is not None and getattr(module, "__file__", None) is not None


#: header names of protocol v2 itself; any other header is the sender's and is kept on retry
_PROTOCOL_HEADERS = frozenset(TaskHeaders.__annotations__) | {"redelivered", "compression"}


def _options_from_request(request: Context) -> dict[str, Any]:
    """Send options that reproduce `request`'s message (Celery's ``signature_from_request``)."""
    hard, soft = request.timelimit or (None, None)
    options: dict[str, Any] = {
        "task_id": request.id,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "group_id": request.group,
        "group_index": request.group_index,
        "shadow": request.shadow,
        "chord": request.chord,
        "chain": request.chain,
        "link": request.callbacks,
        "link_error": request.errbacks,
        "expires": request.expires,
        "time_limit": hard,
        "soft_time_limit": soft,
        "reply_to": request.reply_to,
        "stamps": request.stamps or None,
        "headers": {k: v for k, v in (request.headers or {}).items() if k not in _PROTOCOL_HEADERS},
    }
    delivery_info = request.delivery_info or {}
    if delivery_info.get("priority") is not None:
        options["priority"] = delivery_info["priority"]
    exchange, routing_key = delivery_info.get("exchange"), delivery_info.get("routing_key")
    if not exchange and routing_key:  # sent to the anonymous exchange: back to that queue
        options["queue"] = routing_key
    elif exchange:
        options.update(exchange=exchange, routing_key=routing_key)
    return options


class Task:
    """A task type. ``@app.task`` creates one subclass per function, with one instance.

    Class attributes are the task's defaults (Celery's names); ``apply_async`` options
    override them per call.
    """

    app: Any = None
    name: str = ""
    #: check call arguments against the function's signature when sending
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180
    rate_limit: str | None = None
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    serializer: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    acks_on_failure: bool | None = None
    acks_on_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    track_started: bool | None = None
    queue: str | None = None
    priority: int | None = None
    expires: float | datetime | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    throws: tuple[type[BaseException], ...] = ()
    #: whether ``run`` receives the task instance as ``self``
    bind: bool = False
    #: whether the function can be imported by name in another process
    importable: bool = True
    #: the options given to the decorator, shipped with the code when it travels by value
    _options: dict[str, Any] = {}
    _blob: bytes | None = None

    def __init__(self) -> None:
        self._local = threading.local()

    # the function ----------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"task {self.name!r} has no run() method")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function here, synchronously (no message, no result stored)."""
        return self.run(*args, **kwargs)

    # request context -------------------------------------------------------------------
    @property
    def request(self) -> Context:
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else Context(called_directly=True)

    def push_request(self, request: Context) -> None:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(request)

    def pop_request(self) -> None:
        self._local.stack.pop()

    # effective settings ----------------------------------------------------------------
    def setting(self, attribute: str, setting: str) -> Any:
        """The task attribute when set, else the app setting."""
        value = getattr(self, attribute)
        return self.app.conf[setting] if value is None else value

    def serializer_for_call(self, explicit: str | None = None) -> str:
        """``cloudpickle`` for code that cannot be imported elsewhere, else the setting."""
        if explicit:
            return explicit
        if self.serializer:
            return self.serializer
        return "cloudpickle" if not self.importable else self.app.conf.task_serializer

    def code_blob(self) -> bytes:
        """The task's code by value (cloudpickle), pickled once per definition."""
        if self._blob is None:
            import cloudpickle

            base = type(self).__mro__[1]
            type(self)._blob = cloudpickle.dumps(
                {
                    "run": type(self).__wrapped__,  # the plain function, not bound
                    "bind": self.bind,
                    "options": self._options,
                    "base": None if base is Task else base,
                }
            )
        return self._blob

    # sending ---------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """``apply_async(args, kwargs)``: send the task with default options."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task to a worker. Options as Celery's (countdown, eta, expires, queue, ...)."""
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if self.typing:
            self._check_arguments(args, kwargs)
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return self.app.send_task(self.name, args, kwargs, _task=self, **options)

    def _check_arguments(self, args: Any, kwargs: dict[str, Any]) -> None:
        bounds = type(self).__dict__.get("_positional_bounds")  # set by `_signature`
        if bounds is not None and not kwargs and bounds[0] <= len(args) <= bounds[1]:
            return  # the common case, without binding
        signature = self._signature()
        if signature is None:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{signature}: {exc}") from None

    def _signature(self) -> inspect.Signature | None:
        cls = type(self)
        cached = cls.__dict__.get("_call_signature", _MISSING)
        if cached is _MISSING:
            try:
                cached = inspect.signature(self.run)
            except (TypeError, ValueError):
                cached = None
            cls._call_signature = cached
            cls._positional_bounds = _positional_bounds(cached)
        return cached

    def apply(
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        throw: bool | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Run the task here and now, through the same execution path a worker uses."""
        from .execution import apply_eagerly

        return apply_eagerly(
            self, args or (), kwargs or {}, task_id=task_id, throw=throw, **options
        )

    def AsyncResult(self, task_id: str) -> AsyncResult:
        from .result import AsyncResult

        return AsyncResult(task_id, app=self.app, task_name=self.name)

    # signatures ------------------------------------------------------------------------
    def signature(self, args: Any = None, kwargs: Any = None, **options: Any) -> Signature:
        from .canvas import Signature

        return Signature(self.name, args, kwargs, options=options, app=self.app)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature with these arguments; the parent's result is prepended in a chain."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: a chain does not pass the parent's result."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, it: Any) -> Signature:
        """One message calling this task for every item of `it` (``celery.map``)."""
        from .canvas import xmap

        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Any) -> Signature:
        """One message calling this task with each tuple of `it` (``celery.starmap``)."""
        from .canvas import xstarmap

        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Any, n: int) -> Signature:
        """`it` in chunks of `n` tuples, each chunk one ``starmap`` message in a group."""
        from .canvas import chunks

        return chunks(self.s(), it, n, app=self.app)

    # inside a running task -------------------------------------------------------------
    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None
    ) -> None:
        """Store a custom state (e.g. ``PROGRESS``) for this task (or `task_id`).

        In a worker, a custom state of the running task is also announced as the event
        ``task-<state>`` (``task-progress``), so monitors and widgets are told at once.
        """
        request = self.request
        task_id = task_id or request.id
        if task_id is None:
            raise RuntimeError("update_state needs a task id outside a running task")
        state = state or states.PENDING
        self.app.backend.store_result(task_id, meta, state, request=request)
        emit = request._events
        if emit is not None and task_id == request.id and state not in states.BUILTIN_STATES:
            try:
                emit(f"task-{state.lower()}", task_id, state=state, meta=meta)
            except Exception:
                logger.exception("%s[%s]: could not announce state %s", self.name, task_id, state)

    def progress(self, current: float, total: float | None = None, **info: Any) -> None:
        """Store ``PROGRESS`` with ``{"current", "total", **info}`` and announce it."""
        self.update_state(state=states.PROGRESS, meta={"current": current, "total": total, **info})

    def retry(
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Send this task again, with ``retries + 1``; raise `Retry` to tell the worker.

        The new message is Celery's: same id, same arguments (unless given), the ETA,
        and ``parent_id`` set to this run's parent — or to its own id when it has none.
        Past `max_retries` the original `exc` is raised (or `MaxRetriesExceededError`).
        """
        request = self.request
        if request.called_directly:
            raise exc or Retry("task can be retried", None)
        retries = request.retries + 1
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and retries > limit:
            raise exc or MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} kwargs:{request.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        signal = Retry(exc=exc, when=eta or countdown)
        if request.is_eager:
            raise signal
        try:
            self.app.send_task(
                self.name,
                request.args if args is None else args,
                request.kwargs if kwargs is None else kwargs,
                _task=self,
                **{**_options_from_request(request), **options},
                retries=retries,
                countdown=countdown,
                eta=eta,
            )
        except Exception as send_error:  # Celery: the message is rejected, not requeued
            raise Reject(send_error, requeue=False) from send_error
        if throw:
            raise signal
        return signal

    # hooks: override in a base class -----------------------------------------------------
    def before_start(self, task_id: str, args: Any, kwargs: dict[str, Any]) -> None:
        """Called in the worker before the task runs."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: dict[str, Any]) -> None:
        """Called in the worker after the task succeeded."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker after the task failed."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker when the task asked to be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Any,
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker after every run, whatever the outcome."""

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"


def build_task_class(
    app: Any,
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    base: type[Task] | None = None,
    bind: bool = False,
    **options: Any,
) -> type[Task]:
    """The Task subclass for `fn` (what ``@app.task`` instantiates)."""
    base = base or Task
    unknown = [key for key in options if not hasattr(base, key)]
    if unknown:
        hints = {k: difflib.get_close_matches(k, dir(base), n=1) for k in unknown}
        detail = ", ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items()
        )
        raise TypeError(f"unknown task option(s) {detail}")
    name = name or f"{fn.__module__}.{fn.__qualname__}"
    attrs: dict[str, Any] = {
        **options,
        "app": app,
        "name": name,
        "bind": bind,
        "run": fn if bind else staticmethod(fn),
        "importable": is_importable(fn),
        "_options": dict(options, name=name),
        "_blob": None,
        "__doc__": fn.__doc__,
        "__module__": fn.__module__,
        "__qualname__": fn.__qualname__,
        "__wrapped__": staticmethod(fn),
    }
    return type(fn.__name__, (base,), attrs)
