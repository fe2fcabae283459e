"""The `App`: configuration, the task registry, and sending tasks.

Several apps live side by side in one process; each has its own settings, tasks,
signals, bootsteps, logical clock, broker namespace and result store.
"""

from __future__ import annotations

import html
import itertools
import os
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kombu.clocks import LamportClock

from . import canvas
from .backends import Backend, backend_for_url
from .bootsteps import StepRegistry
from .config import Settings
from .context import current_request
from .exceptions import NotRegistered
from .messaging import Broker, resolve_broker_url
from .protocol import build_task_message, new_id
from .result import AsyncResult, GroupResult
from .routing import Router
from .signals import Signals
from .task import Task, build_task_class

__all__ = ["App", "TaskRegistry"]

#: apply_async options Celery accepts that have no meaning here; accepted and ignored
_IGNORED_OPTIONS = frozenset(
    {
        "producer",
        "connection",
        "router",
        "result_cls",
        "publisher",
        "route_name",
        "task_type",
        "retry",
        "retry_policy",
        "mandatory",
        "immediate",
        "delivery_mode",
        "subtask_type",
        "replaced_task_nesting",
        "chord_size",
        "is_eager",
    }
)
_CODE_CACHE_SIZE = 256
_counter = itertools.count(1)


class TaskRegistry(dict):
    """``app.tasks``: task name → task, plus tasks whose code arrived in a message."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self._app = weakref.ref(app)
        self._by_code: OrderedDict[bytes, Task] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, task: Task) -> Task:
        self[task.name] = task
        return task

    def unregister(self, name: str) -> None:
        if self.pop(name, None) is None:
            raise NotRegistered(name)

    def resolve(self, name: str, code: bytes | None = None) -> Task:
        """The task to run for `name`: the code shipped in the message if any, else ours."""
        if code is not None:
            return self._from_code(name, code)
        try:
            return self[name]
        except KeyError:
            raise NotRegistered(name) from None

    def _from_code(self, name: str, code: bytes) -> Task:
        with self._lock:
            task = self._by_code.get(code)
            if task is not None:
                self._by_code.move_to_end(code)
                return task
        import cloudpickle

        spec = cloudpickle.loads(code)  # signed with the body it came in, checked by the caller
        options = dict(spec.get("options") or {})
        options.pop("name", None)
        cls = build_task_class(
            self._app(),
            spec["run"],
            name=name,
            base=spec.get("base"),
            bind=spec.get("bind", False),
            **options,
        )
        task = cls()
        with self._lock:
            self._by_code[code] = task
            while len(self._by_code) > _CODE_CACHE_SIZE:
                self._by_code.popitem(last=False)
        return task

    def user_tasks(self) -> list[str]:
        """Registered names, without Celery's built-in ``celery.*`` tasks."""
        return sorted(n for n in self if not n.startswith("celery."))


class App:
    """A task app: ``App("demo")`` runs entirely in this process (memory broker and backend).

    Parameters
    ----------
    main:
        The app's name, shown in worker names and widgets.
    broker, backend:
        URLs: ``memory://`` (default), ``fakeredis://``, ``redis://host:port/db``, ``amqp://``.
    **settings:
        Celery-named settings, e.g. ``task_acks_late=True``; unknown names raise.
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main or "__main__"
        self.id = uuid.uuid4().hex[:12]
        self.conf = Settings(settings)
        if broker is not None:
            self.conf.broker_url = broker
        if backend is not None:
            self.conf.result_backend = backend
        self.tasks = TaskRegistry(self)
        self.signals = Signals()
        self.steps: dict[str, StepRegistry] = {"worker": StepRegistry(), "consumer": StepRegistry()}
        self.clock = LamportClock()
        self._lock = threading.RLock()
        self._broker: Broker | None = None
        self._backend: Backend | None = None
        self._router: tuple[tuple[Any, ...], Router] | None = None
        self._control: Any = None
        self._events: Any = None
        self._generated_key = os.urandom(32)
        self._workers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._worker_numbers = itertools.count(1)
        self._register_builtins()

    # configuration ------------------------------------------------------------------------
    @property
    def secret_key(self) -> bytes:
        """HMAC key for cloudpickled payloads: setting, environment, or this process's own."""
        return self.conf.secret_key_bytes() or self._generated_key

    def _namespace(self) -> str:
        return f"{self.main}-{self.id}"

    def _url(self, url: str) -> str:
        """A bare ``fakeredis://`` is this app's own fake server, shared by broker and backend."""
        if url.startswith("fakeredis://") and url.partition("://")[2].strip("/") in ("", "0"):
            return f"fakeredis://{self._namespace()}/0"
        return url

    @property
    def broker(self) -> Broker:
        broker = self._broker
        if broker is not None:
            return broker
        with self._lock:
            if self._broker is None:
                url = resolve_broker_url(self._url(self.conf.broker_url), self._namespace())
                self._broker = Broker(self, url)
            return self._broker

    @property
    def backend(self) -> Backend:
        backend = self._backend
        if backend is not None:
            return backend
        with self._lock:
            if self._backend is None:
                url = self.conf.result_backend
                self._backend = backend_for_url(self, self._url(url) if url else url)
            return self._backend

    @property
    def router(self) -> Router:
        conf = self.conf
        key = (
            id(conf.task_routes),
            id(conf.task_queues),
            conf.task_default_queue,
            conf.task_create_missing_queues,
            conf.task_default_exchange_type,
        )
        cached = self._router
        if cached is None or cached[0] != key:
            cached = self._router = (key, Router(conf))
        return cached[1]

    def connection(self, **overrides: Any) -> Any:
        """A new kombu connection to the broker (``connection_for_write`` in Celery)."""
        return self.broker.connection(**overrides)

    connection_for_write = connection_for_read = connection

    # tasks --------------------------------------------------------------------------------
    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        bind: bool = False,
        base: type[Task] | None = None,
        **options: Any,
    ) -> Any:
        """Register `fn` as a task: ``@app.task`` or ``@app.task(name=..., bind=True, ...)``.

        Re-running the definition (a notebook cell) replaces the task: running workers use
        the new code for the next message.
        """

        def create(fn: Callable[..., Any]) -> Task:
            cls = build_task_class(self, fn, name=name, base=base, bind=bind, **options)
            return self.tasks.register(cls())

        return create(fn) if fn is not None else create

    def _register_builtins(self) -> None:
        app = self

        @self.task(name="celery.ping")
        def ping() -> str:
            return "pong"

        @self.task(name="celery.map")
        def xmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
            fn = canvas.signature(task, app=app).type
            return [fn(item) for item in it]

        @self.task(name="celery.starmap")
        def xstarmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
            fn = canvas.signature(task, app=app).type
            return [fn(*item) for item in it]

        @self.task(name="celery.chunks")
        def chunks(task: dict[str, Any], it: list[Any], n: int) -> Any:
            return canvas.chunks(task, it, n, app=app).apply_async()

    def signature(self, name: str, args: Any = None, kwargs: Any = None, **options: Any):
        return canvas.Signature(name, args, kwargs, options=options, app=self)

    def send_task(  # noqa: C901 - Celery's option set, resolved in one place
        self,
        name: str,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: Any = None,
        expires: Any = None,
        task_id: str | None = None,
        queue: Any = None,
        routing_key: str | None = None,
        exchange: Any = None,
        priority: int | None = None,
        headers: dict[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        ignore_result: bool | None = None,
        serializer: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        shadow: str | None = None,
        retries: int = 0,
        chain: list[dict[str, Any]] | None = None,
        chord: dict[str, Any] | None = None,
        group_id: str | None = None,
        group_index: int | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
        add_to_parent: bool = True,
        reply_to: str | None = None,
        stamps: dict[str, Any] | None = None,
        _task: Task | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send task `name` by name (it need not be registered here), like Celery's."""
        if options:
            unknown = set(options) - _IGNORED_OPTIONS
            if unknown:
                raise TypeError(f"unknown apply_async option(s): {sorted(unknown)}")
        conf = self.conf
        task = _task if _task is not None else self.tasks.get(name)
        task_id = task_id or new_id()
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        parent = current_request()
        if parent is not None and parent.id is not None:
            parent_id = parent_id or parent.id
            root_id = root_id or parent.root_id
        if task is not None:
            if expires is None:
                expires = task.expires
            if priority is None:
                priority = task.priority
            if ignore_result is None:
                ignore_result = task.ignore_result
            if time_limit is None:  # Celery's client sends the task's limits in the header
                time_limit = task.time_limit
            if soft_time_limit is None:
                soft_time_limit = task.soft_time_limit
        if priority is None and conf.task_default_priority is not None:
            priority = conf.task_default_priority
        route = self.router.route(
            name,
            args,
            kwargs,
            {
                "queue": queue,
                "exchange": exchange,
                "routing_key": routing_key,
                "priority": priority,
            },
            task_queue=task.queue if task is not None else None,
        )
        if priority is None:
            priority = route.priority
        message = build_task_message(
            name,
            task_id,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            group_id=group_id,
            group_index=group_index,
            retries=retries,
            chain=chain,
            callbacks=None if link is None else _sig_dicts(link),
            errbacks=None if link_error is None else _sig_dicts(link_error),
            chord=chord,
            root_id=root_id,
            parent_id=parent_id,
            shadow=shadow,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            ignore_result=bool(ignore_result),
            reply_to=reply_to or "",
            priority=priority,
            headers=headers,
            stamps=stamps,
        )
        if task is not None:
            serializer = task.serializer_for_call(serializer)
        serializer = serializer or conf.task_serializer
        if (
            serializer == "cloudpickle"
            and task is not None
            and not task.importable
            and not self.broker.is_memory
        ):
            message.embed["nbqueue_code"] = task.code_blob()
        if conf.task_send_sent_event and self._events is None:
            self.events  # noqa: B018 - creating it connects task-sent to after_task_publish
        signals = self.signals
        if signals.before_task_publish:
            signals.before_task_publish.send(
                sender=name,
                body=message.body,
                exchange=route.exchange,
                routing_key=route.routing_key,
                headers=message.headers,
                properties=message.properties,
                declare=[route.queue],
            )
        if not ignore_result:
            self.backend.on_task_call(task_id)
        self.broker.publish_task(message, route, serializer)
        if signals.after_task_publish:
            signals.after_task_publish.send(
                sender=name,
                body=message.body,
                exchange=route.exchange,
                routing_key=route.routing_key,
                headers=message.headers,
            )
        result = AsyncResult(task_id, app=self, task_name=name)
        if parent is not None and add_to_parent:
            parent.children.append(result)
        return result

    @contextmanager
    def producer_batch(self) -> Iterator[None]:
        """Send everything in this block through one producer (one pipeline on Redis)."""
        with self.broker.batch():
            yield

    # results ------------------------------------------------------------------------------
    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:
        return AsyncResult(task_id, app=self, **kwargs)

    def GroupResult(self, group_id: str, results: list[AsyncResult] | None = None):
        return GroupResult(group_id, results, app=self)

    # workers and control ------------------------------------------------------------------
    def worker(self, **options: Any) -> Any:
        """An unstarted worker for this app; see `nbqueue.worker.Worker` for options."""
        from .worker import Worker

        return Worker(self, **options)

    def _worker_created(self, worker: Any) -> int:
        self._workers.add(worker)
        return next(self._worker_numbers)

    @property
    def workers(self) -> list[Any]:
        """This app's workers that are alive in this process."""
        return [w for w in list(self._workers) if not w.stopped]

    @property
    def control(self) -> Any:
        """Remote control: ``app.control.inspect().ping()``, ``app.control.revoke(id)``."""
        with self._lock:
            if self._control is None:
                from .control import Control

                self._control = Control(self)
            return self._control

    @property
    def events(self) -> Any:
        """Events: ``app.events.Receiver(handlers=...)``, ``app.events.State()``, task-sent."""
        with self._lock:
            if self._events is None:
                from .events import Events

                self._events = Events(self)
            return self._events

    def close(self) -> None:
        """Stop this app's workers and release its connections."""
        for worker in self.workers:
            worker.stop()
        if self._events is not None:
            self._events.close()
        with self._lock:
            if self._broker is not None:
                self._broker.close()
            if self._backend is not None:
                self._backend.close()
            self._broker = self._backend = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<App {self.main!r} broker={self.conf.broker_url} backend={self.conf.result_backend}>"
        )

    def _repr_html_(self) -> str:
        tasks = ", ".join(html.escape(n) for n in self.tasks.user_tasks()) or "none"
        workers = ", ".join(html.escape(w.hostname) for w in self.workers) or "none running"
        return (
            f"<div><b>nbqueue app</b> <code>{html.escape(self.main)}</code><br>"
            f"broker <code>{html.escape(str(self.conf.broker_url))}</code>, "
            f"backend <code>{html.escape(str(self.conf.result_backend))}</code><br>"
            f"tasks: {tasks}<br>workers: {workers}</div>"
        )


def _sig_dicts(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items]
