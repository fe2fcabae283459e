"""Gossip: follows the other workers through their worker events, and holds elections.

Consumes ``worker.#`` events on a queue of its own, in the loop thread. Other nodes join
(``worker-online`` or a first heartbeat), leave (``worker-offline``) or are lost (no
heartbeat for twice their interval; checked every `interval` seconds on the timer).
User hooks: ``worker.steps["gossip"].on.node_join.add(fn)`` (and ``node_leave``,
``node_lost``), each called with a `WorkerInfo`.

Elections (the ``election`` control command): every worker announces ``worker-elect``
with its clock, every worker acknowledges every announcement, and once a worker has the
announcements and acknowledgements of all live workers it picks the smallest
``(clock, "host.pid")``: the same leader everywhere. Unlike Celery 5.7, a lone worker
elects itself instead of crashing.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

from kombu import Consumer, Queue

from ... import canvas
from ...bootsteps import Step
from ...events import State, WorkerInfo, event_exchange, event_from_message
from .channels import close_consumer, supports_broadcast

__all__ = ["Gossip"]

logger = logging.getLogger(__name__)

#: an unfinished election is forgotten after this many seconds
_ELECTION_TTL = 60.0


class Gossip(Step):
    """Keeps ``state`` (a `State` of the *other* workers) and runs elections."""

    requires = ("mingle",)
    #: seconds between checks for workers whose heartbeats stopped (Celery's 5 s)
    interval = 5.0

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.hostname = worker.hostname
        self.full_hostname = f"{worker.hostname}.{os.getpid()}"
        self.on = SimpleNamespace(node_join=set(), node_leave=set(), node_lost=set())
        self.state = State(
            on_node_join=self._on_node_join,
            on_node_leave=self._on_node_leave,
            max_tasks_in_memory=1,
        )
        self.election_handlers = {"task": self.call_task}
        self._elections: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._channel: Any = None
        self._entry: Any = None

    def include(self, worker: Any) -> bool:
        return not worker.options.without_gossip and supports_broadcast(worker.app)

    # lifecycle ------------------------------------------------------------------------
    def start(self, worker: Any) -> None:
        worker.steps["hub"].loop.run_sync(self._consume, worker)
        self._entry = worker.steps["timer"].timer.call_repeatedly(self.interval, self.periodic)

    def _consume(self, worker: Any) -> None:
        conf = worker.app.conf
        connection = worker.steps["connection"].connection
        queue = Queue(
            f"{conf.event_queue_prefix}.{uuid.uuid4().hex}",
            exchange=event_exchange(connection, conf.event_exchange),
            routing_key="worker.#",
            auto_delete=True,
            durable=False,
            exclusive=True,
            message_ttl=worker.options.heartbeat_interval,
            expires=conf.event_queue_expires,
        )
        self._channel = connection.channel()
        self._consumer = Consumer(
            self._channel, [queue], on_message=self.on_message, no_ack=True, accept=["json"]
        )
        self._consumer.consume()

    def stop(self, worker: Any) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            worker.steps["timer"].timer.cancel(entry)
        worker.steps["hub"].loop.run_sync(close_consumer, self._consumer, self._channel)
        self._consumer = self._channel = None

    # receiving ------------------------------------------------------------------------
    def on_message(self, message: Any) -> None:
        """A worker event from the broker (loop thread); bad input is logged and dropped."""
        routing_key = (message.delivery_info or {}).get("routing_key") or ""
        if routing_key.startswith("task."):
            return  # a transport without topic routing sends us everything
        try:
            payload = message.decode()
            if not isinstance(payload, dict):
                raise TypeError(f"a worker event must be a dict, not {type(payload).__name__}")
            self._handle(routing_key, message.headers or {}, payload)
        except Exception as exc:
            logger.error("%s: gossip: ignored a bad worker event: %r", self.hostname, exc)

    def _handle(self, routing_key: str, headers: dict[str, Any], payload: dict[str, Any]) -> None:
        if routing_key == "worker.elect":
            self.on_elect(payload)
        elif routing_key == "worker.elect.ack":
            self.on_elect_ack(payload)
        elif (headers.get("hostname") or payload.get("hostname")) == self.hostname:
            self.parent.app.clock.forward()
        else:
            _, event = event_from_message(payload, self.parent.app.clock)
            self.state.event(event)

    # membership -------------------------------------------------------------------------
    def _on_node_join(self, worker: WorkerInfo) -> None:
        logger.info("%s: %s joined the party", self.hostname, worker.hostname)
        self._call_hooks(self.on.node_join, worker)

    def _on_node_leave(self, worker: WorkerInfo) -> None:
        logger.info("%s: %s left", self.hostname, worker.hostname)
        self.state.forget_workers([worker.hostname])
        self._call_hooks(self.on.node_leave, worker)

    def periodic(self, now: float | None = None) -> list[str]:
        """Drop the workers whose heartbeats stopped; returns their names."""
        lost = [w for w in list(self.state.workers.values()) if not w.is_alive(now)]
        for worker in lost:
            logger.info("%s: missed heartbeat from %s", self.hostname, worker.hostname)
            self._call_hooks(self.on.node_lost, worker)
        self.state.forget_workers(w.hostname for w in lost)
        self._expire_elections()
        return [w.hostname for w in lost]

    def alive(self, now: float | None = None) -> list[str]:
        """Names of the other workers alive now."""
        return sorted(w.hostname for w in self.state.alive_workers(now))

    def _call_hooks(self, hooks: set[Any], worker: WorkerInfo) -> None:
        for hook in list(hooks):
            try:
                hook(worker)
            except Exception:
                logger.exception("%s: gossip hook %r failed", self.hostname, hook)

    # elections --------------------------------------------------------------------------
    def election(self, id: str, topic: str, action: Any = None) -> None:
        """Take part in election `id`: announce ourselves to every worker."""
        with self._lock:
            self._election(id)["mine"] = True
        self.parent.steps["events"].send("worker-elect", id=id, topic=topic, action=action, cver=1)

    def _election(self, id_: str) -> dict[str, Any]:
        return self._elections.setdefault(
            id_, {"mine": False, "heap": [], "hosts": set(), "acks": set(), "at": time.time()}
        )

    def on_elect(self, event: dict[str, Any]) -> None:
        """Someone announced itself for an election: note it, and acknowledge."""
        try:
            id_, clock, hostname = event["id"], event["clock"], event["hostname"]
            entry = (clock, f"{hostname}.{event['pid']}", event["topic"], event.get("action"))
        except KeyError as exc:
            logger.error("%s: election request missing field %s", self.hostname, exc)
            return
        with self._lock:
            election = self._election(id_)
            heapq.heappush(election["heap"], entry)
            election["hosts"].add(hostname)
        self.parent.steps["events"].send("worker-elect-ack", id=id_)
        self._maybe_decide(id_)

    def on_elect_ack(self, event: dict[str, Any]) -> None:
        id_, hostname = event.get("id"), event.get("hostname")
        if id_ is None or hostname is None:
            return
        with self._lock:
            self._election(id_)["acks"].add(hostname)
        self._maybe_decide(id_)

    def _maybe_decide(self, id_: str) -> None:
        needed = {*self.alive(), self.hostname}
        with self._lock:
            election = self._elections.get(id_)
            if election is None or not election["mine"]:
                return
            if not (needed <= election["hosts"] and needed <= election["acks"]):
                return
            del self._elections[id_]
        heap = election["heap"]
        winner = self.parent.app.clock.sort_heap(heap) if len(heap) > 1 else heap[0]
        _, leader, topic, action = winner
        if leader != self.full_hostname:
            logger.info("%s: node %s elected for %r", self.hostname, leader, id_)
            return
        logger.info("%s: I won the election %r", self.hostname, id_)
        handler = self.election_handlers.get(topic)
        if handler is None:
            logger.error("%s: unknown election topic %r", self.hostname, topic)
            return
        try:
            handler(action)
        except Exception:
            logger.exception("%s: election action for %r failed", self.hostname, topic)

    def call_task(self, action: Any) -> None:
        """The ``task`` topic: apply `action`, a signature."""
        canvas.signature(action, app=self.parent.app).apply_async()

    def _expire_elections(self) -> None:
        horizon = time.time() - _ELECTION_TTL
        with self._lock:
            for id_ in [i for i, e in self._elections.items() if e["at"] < horizon]:
                del self._elections[id_]

    def info(self) -> dict[str, Any]:
        return {"workers": self.alive()}
