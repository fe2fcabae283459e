"""``fakeredis://<name>/<db>``: kombu's Redis transport against an in-process fake Redis.

Everything kombu's Redis transport does is kept — the same keys and envelopes, ack
emulation (``unacked``/``unacked_index``), visibility timeout and restore with
``redelivered``, priorities served 0 first in steps 0/3/6/9, fanout over pub/sub, the Lua
scripts — against a `fakeredis.FakeServer` looked up by *name* in this process (so a
broker and a result backend, or a Celery app, can share one).

What differs is only how a consumer waits. kombu's poller needs real sockets (fakeredis
has none), so `Transport.drain_events` pops without blocking — the `nbqueue.transports.redis`
fetch script (or ``LMPOP`` with a ``global_keyprefix``) over the same keys in the same order
as kombu's ``BRPOP`` — and, when nothing is there, sleeps on an event
set by the fake server itself: a database change callback (any write, an ack freeing
prefetch room) and the pub/sub socket's response events. `Transport.wakeup` interrupts the
wait from another thread (the worker's loop uses it to run scheduled calls at once).
"""

from __future__ import annotations

import threading
import weakref
from queue import Empty
from time import monotonic
from typing import Any

import fakeredis
import redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from . import redis as nb_redis

__all__ = [
    "Channel",
    "Transport",
    "connection_pool",
    "database",
    "database_number",
    "server",
    "server_for_url",
]

#: the Redis version the fake server speaks (LMPOP, ZRANGE BYSCORE REV and ZADD GT need ≥ 7)
SERVER_VERSION = (7, 0)

_registry: weakref.WeakValueDictionary[str, fakeredis.FakeServer] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def server(name: str) -> fakeredis.FakeServer:
    """The fake Redis server called `name`, created on first use; kept alive by its users."""
    with _registry_lock:
        found = _registry.get(name)
        if found is None:
            found = _registry[name] = fakeredis.FakeServer(version=SERVER_VERSION)
        return found


def database_number(virtual_host: Any) -> int:
    """The database a URL's path names (``/3``, ``3``; empty or ``/`` is 0)."""
    text = str(virtual_host or "").strip("/")
    try:
        return int(text or 0)
    except ValueError:
        raise ValueError(f"a fakeredis database is a number, not {virtual_host!r}") from None


def server_for_url(url: str) -> tuple[fakeredis.FakeServer, int]:
    """The server and database number of ``fakeredis://<name>/<db>`` (name: ``localhost``)."""
    rest = url.partition("://")[2].split("?", 1)[0]
    name, _, db = rest.partition("/")
    return server(name or "localhost"), database_number(db)


def database(fake: fakeredis.FakeServer, db: int) -> Any:
    """Database `db` of `fake` (created under the server lock: ``dbs`` is a defaultdict)."""
    with fake.lock:
        return fake.dbs[db]


def connection_pool(fake: fakeredis.FakeServer, db: int, **kwargs: Any) -> redis.ConnectionPool:
    """A redis-py connection pool whose connections talk to `fake` in this process."""
    return redis.ConnectionPool(
        connection_class=fakeredis.FakeRedisConnection,
        server=fake,
        db=db,
        version=SERVER_VERSION,
        **kwargs,
    )


class _Signal(threading.Event):
    """A socket's ``response_ready`` event that also wakes the transport's waiter."""

    def __init__(self, waker: threading.Event) -> None:
        super().__init__()
        self._waker = waker

    def set(self) -> None:
        super().set()
        self._waker.set()


class _Cycle:
    """The bits of kombu's ``MultiChannelPoller`` that channels use, without a poller."""

    _in_protected_read = False

    def __init__(self) -> None:
        self.after_read: set[Any] = set()
        self.channels: list[Any] = []  # a list: the order the channels take turns in

    def add(self, channel: Any) -> None:
        if channel not in self.channels:
            self.channels.append(channel)

    def discard(self, channel: Any) -> None:
        if channel in self.channels:
            self.channels.remove(channel)

    def _on_connection_disconnect(self, connection: Any) -> None:
        pass

    def close(self) -> None:
        self.channels.clear()


class Channel(nb_redis.Channel):
    """A kombu Redis channel whose connections go to a `fakeredis.FakeServer`."""

    def _get_pool(self, asynchronous: bool = False) -> redis.ConnectionPool:
        conninfo = self.connection.client
        db = database_number(conninfo.virtual_host)
        self.keyprefix_fanout = self.keyprefix_fanout.format(db=db)
        fake = server(conninfo.hostname or "localhost")
        return connection_pool(fake, db, max_connections=self.max_connections)

    def _pop_ready(self) -> bool:
        """Deliver what is waiting (up to the prefetch room), in the order kombu's BRPOP
        would; True if anything was."""
        if self.fetching:  # popped and recorded as unacked in one script
            return self._fetch() > 0
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return False
        prefix = self.global_keyprefix
        keys = [
            prefix + self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues
        ]
        popped = self.client.execute_command("LMPOP", len(keys), *keys, "RIGHT")
        if not popped:
            return False
        key, (item,) = popped
        dest = bytes_to_str(key)[len(prefix) :].rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        self.connection._deliver(loads(bytes_to_str(item)), dest)
        return True

    def _listen(self, waker: threading.Event) -> bool:
        """Keep the pub/sub subscriptions current; deliver one fanout message if waiting."""
        pubsub = self.subclient
        if pubsub.connection is None:
            pubsub.connection = pubsub.connection_pool.get_connection()
        connection = pubsub.connection
        connection.connect()
        sock = connection._sock
        if not isinstance(sock.response_ready, _Signal):
            sock.response_ready = _Signal(waker)
            sock.response_ready.set()
        subscribed = self.__dict__.setdefault("_nbqueue_topics", set())
        new = {
            topic
            for queue in self.active_fanout_queues
            for topic in self._get_subscribe_topics(queue)
        } - subscribed
        if new:
            pubsub.psubscribe(*sorted(new))
            subscribed |= new
            self._in_listen = connection
        while connection.can_read(timeout=0):
            try:
                if self._receive_one(pubsub):
                    return True
            except Empty:  # a fanout message kombu cannot decode (logged by kombu)
                continue
        return False

    def _unsubscribe_from(self, queue: str) -> None:
        super()._unsubscribe_from(queue)
        self.__dict__.get("_nbqueue_topics", set()).difference_update(
            self._get_subscribe_topics(queue)
        )


class Transport(nb_redis.Transport):
    """kombu's Redis transport for ``fakeredis://<name>/<db>``, driven without sockets."""

    Channel = Channel
    driver_type = "redis"
    driver_name = "fakeredis"
    implements = nb_redis.Transport.implements.extend(asynchronous=False)

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.cycle = _Cycle()
        self.server = server(client.hostname or "localhost")
        self._db = database(self.server, database_number(client.virtual_host))
        self._waker = threading.Event()
        self._woken = False
        self._watching = False
        options = client.transport_options
        self.restore_interval = float(
            options.get("unacked_restore_interval", Channel.unacked_restore_interval)
        )
        self._next_restore = monotonic()
        self._next_channel = 0

    def driver_version(self) -> str:
        return fakeredis.__version__

    def wakeup(self) -> None:
        """Make a ``drain_events`` waiting in another thread return now (``TimeoutError``)."""
        self._woken = True
        self._waker.set()

    def _watch(self, on: bool) -> None:
        """(Un)register for the fake database's change notifications."""
        if on == self._watching:
            return
        with self.server.lock:  # the callback set is iterated under this lock
            if on:
                self._db.add_change_callback(self._waker.set)
            else:
                self._db.remove_change_callback(self._waker.set)
        self._watching = on

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message; wait (woken by the server, never polling) up to `timeout`."""
        self._watch(True)
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            self._waker.clear()
            if self._deliver_one():
                return
            self._maybe_restore_visible()
            if self._woken:
                self._woken = False
                raise TimeoutError()
            wait = self._next_restore - monotonic() if self._sweeping() else None
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                wait = remaining if wait is None else min(wait, remaining)
            self._waker.wait(None if wait is None else max(wait, 0.0))

    def _deliver_one(self) -> bool:
        """Deliver one message, the channels taking turns (none starves another)."""
        channels = list(self.cycle.channels)
        for turn in range(len(channels)):
            channel = channels[(self._next_channel + turn) % len(channels)]
            if (channel.active_fanout_queues and channel._listen(self._waker)) or (
                channel.active_queues and channel.qos.can_consume() and channel._pop_ready()
            ):
                self._next_channel += turn + 1
                return True
        return False

    def _sweeping(self) -> bool:
        return any(channel.active_queues for channel in self.cycle.channels)

    def _maybe_restore_visible(self) -> None:
        """kombu's periodic ``restore_visible`` (every ``unacked_restore_interval`` s)."""
        now = monotonic()
        if now < self._next_restore or not self._sweeping():
            return
        self._next_restore = now + self.restore_interval
        for channel in list(self.cycle.channels):
            if channel.active_queues:
                channel.qos.restore_visible(
                    num=channel.unacked_restore_limit,
                    interval=channel.unacked_restore_throttle,
                )
                return

    def close_connection(self, connection: Any) -> None:
        self._watch(False)
        super().close_connection(connection)
