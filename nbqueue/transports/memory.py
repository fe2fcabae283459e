"""nbqueue's in-process broker: a kombu virtual transport that behaves like a real one.

Unlike kombu's ``memory://`` it

* wakes a waiting consumer the moment a message arrives (a condition, not a 1 s poll);
* keeps each *namespace* (the URL's virtual host) apart, so two apps never share queues
  unless they ask to by naming the same namespace;
* serves higher priorities first (0–9, like RabbitMQ; Redis serves *lower* numbers first);
* copies messages in and out (``marshal``), so a queued message is a compact byte string
  that nobody can mutate behind the broker's back;
* restores unacknowledged messages when a channel closes, and after a visibility timeout
  when their consumer vanished without closing (``visibility_timeout`` transport option),
  marking them ``redelivered`` the way kombu's Redis transport does;
* deletes ``auto_delete`` queues when their last consumer goes.
"""

from __future__ import annotations

import marshal
import pickle
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import virtual

from ..protocol import new_id

__all__ = ["Channel", "Namespace", "Transport", "namespace", "namespace_name"]

_PRIORITIES = 10
_registry: weakref.WeakValueDictionary[str, Namespace] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def namespace(name: str) -> Namespace:
    """The broker state for `name`, created on first use; kept alive by its users."""
    with _registry_lock:
        space = _registry.get(name)
        if space is None:
            space = _registry[name] = Namespace(name)
        return space


def namespace_name(client: Any) -> str:
    """The namespace a kombu connection names: the URL's host (``nbmemory://<namespace>``)."""
    return client.hostname or "localhost"


def _freeze(payload: dict[str, Any]) -> bytes:
    try:
        return b"m" + marshal.dumps(payload)
    except ValueError:  # a header holding something marshal cannot hold
        return b"p" + pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def _thaw(data: bytes) -> dict[str, Any]:
    if data[:1] == b"m":
        return marshal.loads(data[1:])
    return pickle.loads(data[1:])


class _Queue:
    """Ten FIFO buckets, one per priority, served highest first."""

    __slots__ = ("buckets", "size")

    def __init__(self) -> None:
        self.buckets = [deque() for _ in range(_PRIORITIES)]

    def put(self, data: bytes, priority: int, front: bool = False) -> None:
        bucket = self.buckets[min(max(int(priority or 0), 0), _PRIORITIES - 1)]
        if front:
            bucket.appendleft(data)
        else:
            bucket.append(data)

    def pop(self) -> bytes | None:
        """The next message (highest priority first), or None."""
        for bucket in reversed(self.buckets):
            if bucket:
                try:
                    return bucket.popleft()
                except IndexError:  # another consumer took it
                    continue
        return None

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets)

    def clear(self) -> int:
        n = len(self)
        for bucket in self.buckets:
            bucket.clear()
        return n

    def __iter__(self) -> Iterator[bytes]:
        for bucket in reversed(self.buckets):
            yield from list(bucket)


class Namespace:
    """Queues, exchanges and unacked messages of one in-process broker namespace."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = virtual.BrokerState()
        self.queues: dict[str, _Queue] = {}
        self.queue_options: dict[str, dict[str, Any]] = {}
        self.unacked: dict[str, tuple[float, dict[str, Any]]] = {}
        self.cond = threading.Condition(threading.Lock())
        self.version = 0
        self.waiting = 0
        #: bumped by every bind, unbind and queue delete (who may hear an exchange changed)
        self.bindings = 0

    def queue(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues.setdefault(name, _Queue())
        return q

    def touch(self) -> None:
        """Wake every consumer waiting in this namespace."""
        with self.cond:
            self.version += 1
            if self.waiting:
                self.cond.notify_all()

    def put(self, queue: str, payload: dict[str, Any], front: bool = False) -> None:
        priority = payload["properties"].get("priority") or 0
        self.queue(queue).put(_freeze(payload), priority, front)
        self.touch()

    def wait(self, seen: int, timeout: float | None) -> None:
        """Wait (with ``cond`` held) until `version` moves past `seen` or `timeout` passes."""
        self.waiting += 1
        try:
            self.cond.wait(timeout)
        finally:
            self.waiting -= 1

    def peek(self, queue: str) -> list[dict[str, Any]]:
        """The messages waiting in `queue`, in delivery order, without consuming them."""
        q = self.queues.get(queue)
        return [] if q is None else [_thaw(data) for data in q]

    def sizes(self) -> dict[str, int]:
        """Waiting messages per queue."""
        return {name: len(q) for name, q in list(self.queues.items())}

    def expired_unacked(self, visibility_timeout: float) -> list[str]:
        deadline = monotonic() - visibility_timeout
        return [tag for tag, (since, _) in list(self.unacked.items()) if since <= deadline]

    def __repr__(self) -> str:
        return f"<Namespace {self.name!r}: {self.sizes()}>"


class QoS(virtual.QoS):
    """kombu's QoS, also recording deliveries in the namespace for the visibility timeout."""

    def append(self, message: Any, delivery_tag: str) -> None:
        super().append(message, delivery_tag)
        self.channel.space.unacked[delivery_tag] = (monotonic(), message._raw)

    def ack(self, delivery_tag: str) -> None:
        was_full = not self.can_consume()
        super().ack(delivery_tag)
        self.channel.space.unacked.pop(delivery_tag, None)
        if was_full:  # a consumer may be waiting for room under its prefetch limit
            self.channel.space.touch()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        was_full = not self.can_consume()
        super().reject(delivery_tag, requeue=requeue)
        self.channel.space.unacked.pop(delivery_tag, None)
        if was_full:
            self.channel.space.touch()

    def restore_unacked(self) -> list[Any]:
        """Restore what this channel still holds, skipping what a sweep already restored."""
        self._flush()
        errors = []
        unacked = self.channel.space.unacked
        while self._delivered:
            tag, message = self._delivered.popitem()
            if unacked.pop(tag, None) is None:
                continue
            try:
                self.channel._restore(message)
            except Exception as exc:
                errors.append((exc, message))
        return errors


class Channel(virtual.Channel):
    """A channel onto one namespace."""

    QoS = QoS
    do_restore = True
    supports_fanout = True
    body_encoding = None  # bodies stay bytes/str in process: no base64 round trip

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.space: Namespace = connection.space
        self._queue_consumers: dict[str, int] = {}
        self._next_queue = 0

    # the eight primitives --------------------------------------------------------------
    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return queue in self.space.queues

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        self.space.queue(queue)

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        q = self.space.queues.get(queue)
        data = None if q is None else q.pop()
        if data is None:
            raise Empty()
        return _thaw(data)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self.space.put(queue, message)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str, **kw: Any):
        for queue in self._lookup(exchange, routing_key):
            self.space.put(queue, message)

    def _queue_bind(self, *args: Any) -> None:
        self.space.bindings += 1  # kombu has added the row to the exchange's table

    def queue_unbind(self, queue: str, exchange: str | None = None, *args: Any, **kw: Any):
        super().queue_unbind(queue, exchange, *args, **kw)
        self.space.bindings += 1

    def _size(self, queue: str) -> int:
        q = self.space.queues.get(queue)
        return 0 if q is None else len(q)

    def _purge(self, queue: str) -> int:
        q = self.space.queues.get(queue)
        return 0 if q is None else q.clear()

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.space.queues.pop(queue, None)
        self.space.queue_options.pop(queue, None)

    # declarations and consumers ----------------------------------------------------------
    def queue_declare(self, queue: str | None = None, passive: bool = False, **kwargs: Any):
        ok = super().queue_declare(queue, passive=passive, **kwargs)
        if kwargs.get("auto_delete"):
            self.space.queue_options[ok.queue] = {"auto_delete": True}
        return ok

    def routes(self, exchange: str, routing_key: str) -> list[str]:
        """The queues a message to `exchange` with `routing_key` would land in now."""
        return list(self._lookup(exchange, routing_key))

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        """Delete `queue` and every exchange's routes to it (kombu leaves those behind, and
        a fanout or topic publish would then recreate the queue and fill it forever)."""
        if if_empty and self._size(queue):
            return
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        for meta in list(self.state.exchanges.values()):
            table = meta.get("table")
            if table and any(row[-1] == queue for row in table):
                meta["table"] = [row for row in table if row[-1] != queue]
        self._delete(queue)
        self.space.bindings += 1

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kw: Any):
        self._queue_consumers[queue] = self._queue_consumers.get(queue, 0) + 1
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kw)

    def basic_cancel(self, consumer_tag: str) -> None:
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue is None:
            return
        left = self._queue_consumers.get(queue, 1) - 1
        self._queue_consumers[queue] = left
        if left <= 0 and self.space.queue_options.get(queue, {}).get("auto_delete"):
            self.queue_delete(queue)

    def _next_delivery_tag(self) -> str:
        return new_id()

    def after_reply_message_received(self, queue: str) -> None:
        pass  # pidbox reply queues are reused by the same mailbox

    # redelivery --------------------------------------------------------------------------
    def _restore(self, message: Any) -> None:
        """Put an unacked message back at the front of its queue, marked redelivered."""
        self._restore_payload(message.serializable())

    def _restore_at_beginning(self, message: Any) -> None:
        self._restore(message)

    def _restore_payload(self, payload: dict[str, Any]) -> None:
        info = {**(payload["properties"].get("delivery_info") or {}), "redelivered": True}
        payload = {
            **payload,
            "properties": {**payload["properties"], "delivery_info": info},
            "headers": {**(payload.get("headers") or {}), "redelivered": True},
        }
        for queue in self._lookup(info.get("exchange", ""), info.get("routing_key", "")):
            self.space.put(queue, payload, front=True)

    def restore_visible(self, visibility_timeout: float) -> int:
        """Restore messages delivered more than `visibility_timeout` seconds ago and unacked."""
        restored = 0
        for tag in self.space.expired_unacked(visibility_timeout):
            entry = self.space.unacked.pop(tag, None)
            if entry is not None:
                self._restore_payload(dict(entry[1]))
                restored += 1
        return restored


class Transport(virtual.Transport):
    """The in-process transport; ``nbmemory://<namespace>``."""

    Channel = Channel
    polling_interval = None
    driver_type = "memory"
    driver_name = "nbqueue-memory"
    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
    )

    #: how often an idle consumer sweeps for messages past the visibility timeout
    restore_interval = 1.0

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.space = namespace(namespace_name(client))
        self.state = self.space.state
        options = client.transport_options
        self.visibility_timeout = float(options.get("visibility_timeout", 3600.0))
        self._woken = False
        self._next_restore = monotonic()
        self._next_channel = 0

    def driver_version(self) -> str:
        return "1"

    def bound_queues(self, exchange: str) -> list[str]:
        """Queues bound to `exchange` now (e.g. the pidbox nodes listening)."""
        table = self.state.exchanges.get(exchange, {}).get("table") or ()
        return sorted({row[-1] for row in table})

    def wakeup(self) -> None:
        """Interrupt a ``drain_events`` waiting in another thread."""
        self._woken = True
        self.space.touch()

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message, waiting on the namespace's condition (no polling)."""
        space = self.space
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            seen = space.version
            if self._deliver_one():
                return
            self._maybe_restore_visible()
            with space.cond:
                while space.version == seen and not self._woken:
                    now = monotonic()
                    remaining = None if deadline is None else deadline - now
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError()
                    if space.unacked:  # wake for the next visibility-timeout sweep
                        sweep = max(self._next_restore - now, 0.001)
                        remaining = sweep if remaining is None else min(remaining, sweep)
                    space.wait(seen, remaining)
                    if space.unacked and monotonic() >= self._next_restore:
                        break
                if self._woken:
                    self._woken = False
                    raise TimeoutError()

    def _deliver_one(self) -> bool:
        """Pop one message from a consumed queue (round robin over channels and queues)."""
        queues = self.space.queues
        channels = self.channels
        first = self._next_channel % len(channels) if channels else 0
        for turn in range(len(channels)):
            channel = channels[(first + turn) % len(channels)]
            active = channel._active_queues
            if not active or not channel._consumers or not channel.qos.can_consume():
                continue
            count = len(active)
            start = channel._next_queue
            for offset in range(count):
                name = active[(start + offset) % count]
                q = queues.get(name)
                data = q.pop() if q is not None else None
                if data is not None:
                    channel._next_queue = (start + offset + 1) % count
                    self._next_channel = first + turn + 1  # the next channel goes first next
                    self._deliver(_thaw(data), name)
                    return True
        return False

    def _maybe_restore_visible(self) -> None:
        now = monotonic()
        if now < self._next_restore or not self.channels:
            return
        self._next_restore = now + min(self.restore_interval, self.visibility_timeout / 4)
        self.channels[0].restore_visible(self.visibility_timeout)
