"""The `Worker`: a blueprint of bootsteps running in background threads of this process."""

from __future__ import annotations

import atexit
import html
import logging
import os
import socket
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .. import bootsteps, states
from ..bootsteps import Blueprint, Step
from ..exceptions import BootstepError, ImproperlyStarted
from ..protocol import saferepr
from .ratelimit import parse_rate
from .request import signal_number
from .state import WorkerState
from .steps import worker_steps

__all__ = ["Worker", "WorkerBlueprint", "WorkerOptions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """A worker's options, fixed when it is created."""

    concurrency: int
    pool: str
    queues: tuple[str, ...]
    prefetch_multiplier: int
    shutdown_timeout: float
    autoscale: tuple[int, int] | None = None
    statedb: str | None = None
    beat: bool = False
    send_events: bool = False
    heartbeat_interval: float = 2.0
    without_heartbeat: bool = False
    without_gossip: bool = False
    without_mingle: bool = False
    autoreload: bool = False


class WorkerBlueprint:
    """Both blueprints of a worker seen as one: the worker's steps, then the consumer's."""

    def __init__(self, worker: Blueprint, consumer: Blueprint) -> None:
        self.worker = worker
        self.consumer = consumer

    def describe(self) -> list[dict[str, Any]]:
        """One dict per step in start order: name, blueprint, requires, state, since (, error)."""
        rows = []
        for row in self.worker.describe():
            rows.append(row)
            if row["name"] == "consumer":
                rows.extend(self.consumer.describe())
        return rows

    def add_listener(self, listener: Any) -> Any:
        """Call `listener(change)` on every step state change; returns an unsubscribe function."""
        removers = [self.worker.add_listener(listener), self.consumer.add_listener(listener)]

        def remove() -> None:
            for remover in removers:
                remover()

        return remove

    def text(self) -> str:
        return bootsteps.render_text(self.describe())

    def dot(self) -> str:
        return bootsteps.render_dot(self.describe())

    def html(self) -> str:
        return bootsteps.render_html(self.describe())

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


class Worker:
    """Runs an app's tasks in background threads: ``with app.worker(concurrency=4) as w: ...``.

    Parameters
    ----------
    concurrency:
        Pool size (default: ``worker_concurrency`` or the number of CPUs).
    pool:
        ``"threads"`` (default), ``"solo"`` or ``"processes"`` (CPU-bound work, hard limits).
    queues:
        Queue names to consume (default: ``task_default_queue``).
    hostname:
        Node name ``name@host``, unique per worker.
    prefetch_multiplier:
        Messages reserved per pool slot (``worker_prefetch_multiplier``); 0 means unlimited.
    autoscale:
        ``(max, min)``: the Autoscaler step grows the pool up to ``max`` under a backlog.
    statedb:
        A file where the StateDB step keeps revoked ids and the clock across restarts.
    beat:
        Run the embedded periodic scheduler (``beat_schedule``) as the Beat step.
    autoreload:
        Reload task modules changed on disk (the Autoreloader step).
    """

    def __init__(
        self,
        app: Any,
        *,
        concurrency: int | None = None,
        pool: str | None = None,
        queues: Any = None,
        hostname: str | None = None,
        prefetch_multiplier: int | None = None,
        shutdown_timeout: float | None = None,
        autoscale: tuple[int, int] | None = None,
        statedb: str | None = None,
        beat: bool = False,
        send_events: bool | None = None,
        heartbeat_interval: float | None = None,
        without_heartbeat: bool = False,
        without_gossip: bool = False,
        without_mingle: bool = False,
        autoreload: bool = False,
    ) -> None:
        conf = app.conf
        self.app = app
        number = app._worker_created(self)
        self.hostname = hostname or f"w{number}-{os.getpid()}@{socket.gethostname()}"
        if isinstance(queues, str):
            queues = [q.strip() for q in queues.split(",") if q.strip()]
        concurrency = concurrency or conf.worker_concurrency or os.cpu_count() or 1
        if autoscale:
            concurrency = max(int(autoscale[1]), 1)
        self.options = WorkerOptions(
            concurrency=int(concurrency),
            pool=pool or conf.worker_pool,
            queues=tuple(queues or (conf.task_default_queue,)),
            prefetch_multiplier=int(
                conf.worker_prefetch_multiplier
                if prefetch_multiplier is None
                else prefetch_multiplier
            ),
            shutdown_timeout=float(
                conf.worker_shutdown_timeout if shutdown_timeout is None else shutdown_timeout
            ),
            autoscale=tuple(autoscale) if autoscale else None,  # type: ignore[arg-type]
            statedb=statedb or conf.worker_state_db,
            beat=beat,
            send_events=bool(conf.worker_send_task_events if send_events is None else send_events),
            heartbeat_interval=float(heartbeat_interval or conf.worker_heartbeat_interval),
            without_heartbeat=without_heartbeat,
            without_gossip=without_gossip,
            without_mingle=without_mingle,
            autoreload=autoreload,
        )
        self.state = WorkerState()
        self.stats: Counter[str] = Counter()
        self._queues: tuple[str, ...] = self.options.queues
        #: per-worker overrides set by remote control (``rate_limit``, ``time_limit``)
        self.rate_limits: dict[str, str | None] = {}
        self.time_limits: dict[str, tuple[float | None, float | None]] = {}
        self._lock = threading.RLock()
        self._status = "created"
        self._stopped = threading.Event()
        self._atexit: Any = None
        #: set by a cold shutdown: stop without waiting for running tasks
        self.cold = False
        self._build()

    # blueprint ----------------------------------------------------------------------------
    def _build(self) -> None:
        steps: list[Any] = [*worker_steps(), *self.app.steps["worker"]]
        self.worker_blueprint = Blueprint("worker", steps).apply(self)
        consumer = self.worker_blueprint.steps["consumer"]
        self.consumer_blueprint: Blueprint = consumer.blueprint
        self._pool = self.worker_blueprint.steps["pool"].pool
        self.blueprint = WorkerBlueprint(self.worker_blueprint, self.consumer_blueprint)

    @property
    def steps(self) -> dict[str, Step]:
        """Every step of both blueprints by name: ``worker.steps["pool"].pool``."""
        return {**self.worker_blueprint.steps, **self.consumer_blueprint.steps}

    @property
    def queues(self) -> tuple[str, ...]:
        """Names of the queues consumed now (``options.queues`` plus ``add_consumer``)."""
        return self._queues

    def consume_from(self) -> list[Any]:
        """The kombu queues this worker consumes."""
        return [self.app.router.queue(name) for name in self._queues]

    # lifecycle ----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """``created``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        return self._status

    @property
    def stopped(self) -> bool:
        return self._status in ("created", "stopped")

    def start(self) -> Worker:
        """Start every step; returns once the worker is consuming. Raises if a step fails."""
        with self._lock:
            if self._status == "running":
                return self
            if self._status == "stopped":
                self._build()
            self.cold = False
            self._status = "starting"
            self._stopped.clear()
            self.app.signals.worker_init.send(sender=self)
            try:
                self.worker_blueprint.start(self)
            except BaseException:
                self._status = "stopped"
                self._stopped.set()
                raise
            self._status = "running"
            self._atexit = _register_atexit(self)
        logger.info("%s: ready, consuming %s", self.hostname, ", ".join(self._queues))
        self.app.signals.worker_ready.send(sender=self)
        return self

    def stop(self) -> None:
        """Warm shutdown: stop consuming, return unstarted messages, let running tasks finish
        (up to ``shutdown_timeout`` seconds)."""
        with self._lock:
            if self._status not in ("running", "starting"):
                return
            self._status = "stopping"
            how = "cold" if self.cold else "warm"
            self.app.signals.worker_shutting_down.send(sender=self, how=how)
            self.worker_blueprint.stop(self)
            self._status = "stopped"
            if self._atexit is not None:
                atexit.unregister(self._atexit)
                self._atexit = None
        self.app.signals.worker_shutdown.send(sender=self)
        self._stopped.set()
        logger.info("%s: stopped", self.hostname)

    def terminate(self) -> None:
        """Cold shutdown: like `stop`, but running tasks are not waited for (their unacked
        messages go back to the broker; with early acks they are lost, as in Celery)."""
        self.cold = True
        self.state.wake()
        self.stop()

    def stop_soon(self) -> None:
        """Stop from a worker thread (e.g. the shutdown control command) without deadlock."""
        threading.Thread(
            target=self.stop, name=f"nbqueue-{self.hostname}-stop", daemon=True
        ).start()

    def stop_step(self, name: str) -> list[str]:
        """Stop one of the consumer's steps and the steps that require it, leaving the rest
        running (``stop_step("tasks")``: no new messages are taken); returns the names."""
        with self._lock:
            return self._consumer_step(name).stop_step(self, name)

    def start_step(self, name: str) -> list[str]:
        """Start a stopped consumer step again, with its stopped dependents; returns the names."""
        with self._lock:
            return self._consumer_step(name).start_step(self, name)

    def _consumer_step(self, name: str) -> Blueprint:
        if self._status != "running":
            raise ImproperlyStarted(f"worker {self.hostname} is {self._status}, not running")
        if name in self.worker_blueprint.steps:
            raise BootstepError(
                f"{name!r} is a worker step: it stops and starts with the worker "
                f"(stop(), start()); the consumer's steps stop and start on their own: "
                f"{self.consumer_blueprint.order}"
            )
        return self.consumer_blueprint

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; False on timeout."""
        return self._stopped.wait(timeout)

    def drain(self, timeout: float | None = 30.0) -> bool:
        """Wait until this worker's queues are empty and nothing is reserved or running.

        False on timeout. Useful in notebooks and tests: send, ``drain()``, then look.
        """
        if self._status != "running":
            raise ImproperlyStarted(f"worker {self.hostname} is {self._status}, not running")
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = self.steps["hub"].loop
        while True:
            seen = self.state.version
            # checked in the loop thread, so no message is half-way through delivery
            if loop.run_sync(self._drained):
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self.state.wait_change(seen, min(0.05, remaining) if remaining is not None else 0.05)

    def _drained(self) -> bool:
        if self.state.busy() or self.state.scheduled:
            return False
        channel = self.steps["tasks"].channel
        if channel is None:
            return True
        qos = getattr(channel, "qos", None)  # kombu's virtual transports track unacked here
        if qos is not None and len(qos._delivered) - len(qos._dirty) > 0:
            return False
        return all(_queue_size(channel, queue.name) == 0 for queue in self.consume_from())

    def queue_sizes(self) -> dict[str, int]:
        """Messages waiting in each of this worker's queues."""
        with self.app.connection() as conn:
            channel = conn.default_channel
            return {name: _queue_size(channel, name) for name in self._queues}

    def queue_sizes_total(self) -> int:
        return sum(self.queue_sizes().values())

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # message flow (called by steps) -------------------------------------------------------
    def reserve(self, request: Any) -> None:
        """Hand a request to the pool."""
        self.state.on_reserved(request)
        if self.task_events_enabled():
            self.emit_task_event("task-received", request.id, **_received_fields(request))
        self._pool.submit(request)

    def schedule_eta(self, request: Any) -> None:
        """Hold an ETA/countdown request on the timer until it is due."""
        self.state.on_scheduled(request)
        self.steps["tasks"].update_qos(+1)
        self.steps["timer"].timer.call_at(request.eta, self._release_eta, request)

    def _release_eta(self, request: Any) -> None:
        if request.id not in self.state.scheduled:
            return  # already returned to the queue by a stop
        self.state.on_unscheduled(request)
        self.steps["tasks"].update_qos(-1)
        if request.id in self.state.revoked:
            self.discard_revoked(request)
            return
        self.steps["tasks"].handler.dispatch(request)  # due now: rate limit, then the pool

    def discard_revoked(self, request: Any, *, expired: bool = False) -> None:
        """Ack a request that must not run, store REVOKED and announce it."""
        request.discard(expired=expired)
        self.state.on_dropped(request)

    # control surface: what remote-control commands (and users) call ----------------------
    def revoke(
        self, task_ids: str | list[str], *, terminate: bool = False, signal: str | int = "SIGTERM"
    ) -> list[str]:
        """Never run these task ids here; returns the ids that were waiting or running here.

        Reserved, rate-limited and ETA-held requests are dropped when they come up (acked,
        stored REVOKED, announced). With ``terminate`` a running task is stopped too: an
        exception raised in its thread, which the pool gives up and replaces (the
        ``signal`` is only reported: threads cannot receive signals).
        """
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        for task_id in ids:
            self.state.revoked.add(task_id)
        found = set(self.state.reserved) | set(self.state.scheduled)
        found.update(self.steps["tasks"].handler.rate_limits.held_ids())
        if terminate:
            signum = signal_number(signal)
            kill = getattr(self._pool, "terminate_job", None)  # a process pool sends the signal
            for task_id in ids:
                request = self.state.active.get(task_id)
                if request is None:
                    continue
                if kill(request, signum) if kill is not None else request.terminate(signum):
                    logger.info("%s: terminating %s (%s)", self.hostname, task_id, signum)
                    found.add(task_id)
        return [task_id for task_id in ids if task_id in found]

    def set_autoscale(self, max: int | None = None, min: int | None = None) -> tuple[int, int]:
        """New autoscale bounds (the ``autoscale`` command); ValueError when not autoscaling."""
        if self.worker_blueprint.state_of("autoscaler") == bootsteps.DISABLED:
            raise ValueError("Autoscale not enabled")
        return self.steps["autoscaler"].update(max, min)

    def set_rate_limit(self, task_name: str, rate: str | None) -> None:
        """Change `task_name`'s rate limit on this worker (``"10/s"``, ``None`` to lift it).

        Applies at once, to requests already waiting for a token too.
        """
        self.app.tasks.resolve(task_name)  # NotRegistered for unknown names
        parse_rate(rate)  # ConfigurationError for a malformed rate
        self.rate_limits[task_name] = rate
        self.steps["tasks"].handler.rate_limits.changed(task_name)

    def set_time_limit(self, task_name: str, hard: float | None, soft: float | None) -> None:
        """Change `task_name`'s hard and soft time limits (seconds) on this worker.

        Runs that start from now on get them (as with Celery's ``time_limit`` command).
        """
        self.app.tasks.resolve(task_name)
        self.time_limits[task_name] = (hard, soft)

    def add_consumer(
        self,
        queue: str,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
    ) -> None:
        """Start consuming another queue (declared on the fly, Celery's ``add_consumer``)."""
        from kombu import Exchange, Queue

        if exchange is None and routing_key is None:
            entity = self.app.router.queue(queue)
        else:
            entity = Queue(
                queue, Exchange(exchange or queue, type=exchange_type), routing_key or queue
            )
            self.app.router.queue(entity)
        self.steps["tasks"].add_queue(entity)
        if queue not in self.options.queues:
            self._queues = (*self._queues, queue)

    def cancel_consumer(self, queue: str) -> None:
        """Stop consuming `queue` (messages already reserved still run)."""
        self.steps["tasks"].cancel_queue(queue)
        self._queues = tuple(q for q in self._queues if q != queue)

    def return_unstarted(self) -> None:
        """Put reserved and ETA-held messages back in their queues (at a warm stop)."""
        pending = self.steps["pool"].pool.flush_pending()
        pending += self.steps["tasks"].handler.rate_limits.flush()
        scheduled = list(self.state.scheduled.values())
        for request in scheduled:
            self.state.on_unscheduled(request)
        requests = list(reversed(pending + scheduled))  # front of the queue, original order
        returned = self._requeue(requests)
        for request in requests:
            self.state.on_dropped(request)
        if returned:
            logger.info(
                "%s: returned %d unstarted message(s) to the broker", self.hostname, returned
            )

    def _requeue(self, requests: list[Any]) -> int:
        """Requeue `requests`, stopping at the first failure: the broker is gone, and keeps
        the rest unacked until its visibility timeout restores them. Returns how many went."""
        for returned, request in enumerate(requests):
            try:
                request.reject(requeue=True)
            except Exception as exc:
                logger.warning(
                    "%s: could not return %d unstarted message(s) (%s); the broker restores "
                    "them after its visibility timeout",
                    self.hostname,
                    len(requests) - returned,
                    exc,
                )
                return returned
        return len(requests)

    def on_request_start(self, request: Any) -> None:
        if self.task_events_enabled():
            self.emit_task_event("task-started", request.id)

    def on_request_done(self, request: Any, outcome: Any) -> None:
        """Announce how a run ended (events are sent only when task events are on)."""
        if not self.task_events_enabled():
            return
        state = outcome.state
        if state == states.SUCCESS:
            self.emit_task_event(
                "task-succeeded",
                request.id,
                result=saferepr(outcome.retval),
                runtime=outcome.runtime,
            )
        elif state == states.FAILURE:
            self.emit_task_event(
                "task-failed",
                request.id,
                exception=repr(outcome.exception),
                traceback=outcome.traceback or "",
            )
        elif state == states.RETRY:
            self.emit_task_event(
                "task-retried",
                request.id,
                exception=repr(outcome.exception),
                traceback=outcome.traceback or "",
            )
        elif state == states.REJECTED and not outcome.requeue:  # Celery 5.7: a failure
            self.emit_task_event(
                "task-failed", request.id, exception=repr(outcome.exception), traceback=""
            )

    def task_events_enabled(self) -> bool:
        """Whether task events are on and could be heard (see `EventDispatcher.listened`)."""
        events = self.consumer_blueprint.steps.get("events")
        return events is not None and getattr(events, "task_events", False) and events.listened()

    def emit_task_event(self, type_: str, task_id: str, **fields: Any) -> None:
        """Send a task event through the Events step, when it runs with task events on."""
        events = self.consumer_blueprint.steps.get("events")
        if events is not None and getattr(events, "task_events", False):
            try:
                events.send_task_event(type_, uuid=task_id, **fields)
            except Exception:  # an event lost is logged; the task's run goes on
                logger.exception("%s: could not send %s for %s", self.hostname, type_, task_id)

    def run_coroutine(self, coroutine: Any) -> Any:
        """Run an ``async def`` task's coroutine on the worker's own event-loop thread."""
        return self.steps["pool"].asyncio.run(coroutine)

    # introspection ------------------------------------------------------------------------
    def statistics(self) -> dict[str, Any]:
        """Counters and step info (what ``inspect stats`` reports)."""
        snapshot = self.state.snapshot()
        return {
            "hostname": self.hostname,
            "status": self._status,
            "pid": os.getpid(),
            "clock": str(self.app.clock.value),
            "uptime": round(time.time() - self.state.started_at, 3),
            "total": snapshot["total"],
            "pool": self.steps["pool"].info(),
            **self._optional_step_info(),
            "prefetch_count": self.steps["tasks"].prefetch_count,
            "counts": {
                k: snapshot[k]
                for k in ("active", "reserved", "scheduled", "processed", "succeeded", "failed")
            },
            "rejected": dict(self.stats),
        }

    def _optional_step_info(self) -> dict[str, Any]:
        """Stats of the conditional worker steps that run (``autoscaler``, ...), by name."""
        blueprint = self.worker_blueprint
        return {
            name: blueprint.steps[name].info()
            for name in ("autoscaler", "statedb", "autoreloader", "beat")
            if name in blueprint.steps and blueprint.state_of(name) != bootsteps.DISABLED
        }

    info = statistics

    def __repr__(self) -> str:
        return f"<Worker {self.hostname} {self._status}>"

    def _repr_html_(self) -> str:
        snapshot = self.state.snapshot()
        counts = ", ".join(f"{k}: {snapshot[k]}" for k in ("active", "reserved", "processed"))
        return (
            f"<div><b>nbqueue worker</b> <code>{html.escape(self.hostname)}</code> "
            f"<b>{html.escape(self._status)}</b> · pool {html.escape(self.options.pool)} × "
            f"{self.options.concurrency} · {html.escape(counts)}<br>{self.blueprint.html()}</div>"
        )


def _received_fields(request: Any) -> dict[str, Any]:
    headers = request.task_message.headers
    return {
        "name": request.name,
        "args": headers.get("argsrepr") or saferepr(request.task_message.args),
        "kwargs": headers.get("kwargsrepr") or saferepr(request.task_message.kwargs),
        "root_id": headers.get("root_id"),
        "parent_id": headers.get("parent_id"),
        "retries": headers.get("retries", 0),
        "eta": headers.get("eta"),
        "expires": headers.get("expires"),
    }


def _register_atexit(worker: Worker) -> Any:
    """Stop `worker` at interpreter exit (returning unacked messages), without keeping it alive."""
    ref = weakref.ref(worker)

    def stop_at_exit() -> None:
        alive = ref()
        if alive is not None:
            try:
                alive.stop()
            except Exception:
                logger.exception("stopping %s at exit failed", alive.hostname)

    atexit.register(stop_at_exit)
    return stop_at_exit


def _queue_size(channel: Any, name: str) -> int:
    """Messages waiting in queue `name`: kombu's virtual ``_size``, else a passive declare
    (AMQP, where it counts ready messages, not those delivered and unacked)."""
    size = getattr(channel, "_size", None)
    if size is not None:
        return int(size(name))
    return int(channel.queue_declare(queue=name, passive=True).message_count)
