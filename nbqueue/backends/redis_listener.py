"""The Redis result backend's listener: one pub/sub connection and one thread per backend.

Like Celery's client, a task's result channel (``celery-task-meta-<id>``, named like the
key) is SUBSCRIBEd before the task is sent, so its result cannot be missed; the thread
reads every message, keeps the last one per task id, wakes that id's waiters (no polling)
and tells the backend, which feeds its listeners (progress bars, widgets). Once a ready
state arrives (or a waiter read one from the key) the meta is kept in a bounded cache, so
a ``get()`` after the fact costs no round trip, and the channel is left to be UNSUBSCRIBEd
with others in one command (every `unsubscribe_batch` tasks, or when the connection is
quiet): a message on it meanwhile is ignored, and a task id watched again is taken off.

Only this thread reads the connection; other threads only *write* SUBSCRIBE/UNSUBSCRIBE
to it, under the same lock the reader holds while it parses replies. On a lost connection
the thread reconnects with backoff, subscribes again to everything pending, and every
confirmation bumps a *generation* that tells waiters to read the key once more (a message
published while disconnected is gone).

With hiredis installed, a plain TCP or Unix connection is read by a hiredis reader of our
own: one ``recv`` per wake-up, every complete reply parsed from it in C, instead of
redis-py's ``can_read``/``read_response`` (a ``poll`` and ~10 µs of Python per reply),
and commands are packed by hiredis and written straight to the socket.
"""

from __future__ import annotations

import json
import logging
import select
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import fakeredis
import redis

from .. import states

try:  # redis-py's C parser, used directly on our own socket when it is installed
    import hiredis
except ImportError:  # pragma: no cover - hiredis is optional
    hiredis = None

__all__ = ["Pending", "ResultListener"]

logger = logging.getLogger(__name__)

_READY = frozenset(s.encode() for s in states.READY_STATES)
#: how every meta Celery and nbqueue write begins (Celery's key order, kombu's separators)
_STATUS_FIRST = b'{"status": "'


def _ready_state(raw: bytes) -> bool:
    """Whether a published meta is in a ready state (a malformed one counts as not ready).

    The status is read straight from the bytes when the meta starts with it (every meta
    Celery and nbqueue write does) and holds no escape; anything else is parsed in full.
    """
    if raw.startswith(_STATUS_FIRST):
        end = raw.find(b'"', len(_STATUS_FIRST))
        status = raw[len(_STATUS_FIRST) : end]
        if end > 0 and b"\\" not in status:
            return status in _READY
    try:
        value = json.loads(raw).get("status")
    except (ValueError, AttributeError):
        return False
    return isinstance(value, str) and value.encode() in _READY


class Pending:
    """One task id being watched: its last message, and the waiters to wake on a change.

    Waiters block on a lock of their own, released by the listener (under its lock) on
    every message or (re)subscription: nothing is allocated or signalled when no one waits.
    """

    __slots__ = ("generation", "raw", "read_at", "ready", "subscribed", "version", "waiters")

    def __init__(self) -> None:
        self.raw: bytes | None = None
        #: whether `raw` is in a ready state (the task id is no longer watched then)
        self.ready = False
        #: bumped on every message
        self.version = 0
        #: bumped on every (re)subscription confirmation: re-read the key after it
        self.generation = 0
        #: the generation the key was last read at (by a waiter)
        self.read_at = -1
        #: whether the channel is subscribed on the current connection
        self.subscribed = False
        self.waiters: list[Any] | None = None


class ResultListener:
    """Subscribes to result channels and wakes the waiters of each task id."""

    #: how many ready metas are kept for waiters that come after the fact
    ready_cache_size = 20_000
    #: longest a reader waits before looking at its stop flag again (stop also wakes it)
    idle_timeout = 5.0
    #: channels of ready tasks are unsubscribed together once this many are waiting...
    unsubscribe_batch = 256
    #: ... or once the connection was quiet this long (seconds)
    unsubscribe_idle = 0.5

    def __init__(
        self,
        name: str,
        pool: redis.ConnectionPool,
        key_prefix: str,
        on_message: Callable[[str, bytes], None],
    ) -> None:
        self.name = name
        self._pool = pool
        self._prefix = key_prefix
        self._on_message = on_message
        self._lock = threading.RLock()
        self._pending: dict[str, Pending] = {}
        self._ready: OrderedDict[str, bytes] = OrderedDict()
        #: task ids done with whose channels are still subscribed (unsubscribed in batches)
        self._leaving: dict[str, None] = {}
        self._conn: Any = None
        #: our own parser of `_conn`'s replies (hiredis), or None: redis-py's parser reads
        self._reader: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # called by the backend, from any thread ------------------------------------------
    def watch(self, task_id: str) -> Pending:
        """Subscribe to `task_id`'s channel (once); the thread is started on first use."""
        pending = self._pending.get(task_id)  # watched already: no lock needed to see it
        if pending is not None:
            return pending
        with self._lock:
            pending = self._pending.get(task_id)
            if pending is not None:
                return pending
            pending = self._pending[task_id] = Pending()
            if self._thread is None or not self._thread.is_alive():
                self._start()
            elif self._conn is not None:
                self._leaving.pop(task_id, None)  # still subscribed: subscribe again, not off
                self._send("SUBSCRIBE", self._prefix + task_id)
            return pending

    def entry(self, task_id: str) -> Pending | None:
        """`task_id`'s entry if it is watched, else one holding its cached ready meta (a
        waiter that read the key just before the message came needs no new subscription)."""
        pending = self._pending.get(task_id)
        if pending is not None:
            return pending
        with self._lock:
            pending = self._pending.get(task_id)
            raw = self._ready.get(task_id) if pending is None else None
            if raw is not None:
                pending = Pending()
                pending.raw, pending.ready = raw, True
            return pending

    def wait(self, pending: Pending, version: int, generation: int, timeout: float | None) -> None:
        """Block until `pending` changed since `version` and `generation` were read (a
        message or a subscription), or `timeout` s passed."""
        with self._lock:
            if pending.version != version or pending.generation != generation:
                return
            lock = threading.Lock()
            lock.acquire()
            if pending.waiters is None:
                pending.waiters = [lock]
            else:
                pending.waiters.append(lock)
        if lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return
        with self._lock:
            waiters = pending.waiters
            if waiters is not None and lock in waiters:
                waiters.remove(lock)

    def settle(self, task_id: str, raw: bytes) -> None:
        """`task_id`'s ready meta was read from its key (published before the subscription
        took effect, no message will come): stop watching it, as its message would have."""
        with self._lock:
            pending = self._pending.get(task_id)
            if pending is not None:
                self._update(pending, raw, ready=True)
                self._done(task_id, raw)

    def ready(self, task_id: str) -> bytes | None:
        """The ready meta received for `task_id`, if it is still cached."""
        with self._lock:
            raw = self._ready.get(task_id)
            if raw is not None:
                self._ready.move_to_end(task_id)
            return raw

    def forget(self, task_id: str) -> None:
        """Stop watching `task_id` and drop what was received for it."""
        with self._lock:
            self._ready.pop(task_id, None)
            if self._pending.pop(task_id, None) is not None and self._conn is not None:
                self._leaving[task_id] = None

    def watching(self) -> int:
        """How many task ids are watched (subscribed, their result not received yet)."""
        return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connection."""
        self._stopping.set()
        with self._lock:
            if self._conn is not None:
                self._send("PING")  # makes the reader's socket readable: it sees the stop flag
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._disconnect()
            self._thread = None

    # the thread --------------------------------------------------------------------------
    def _start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            conn = self._conn
            if conn is None:
                if not self._connect():
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            try:
                quiet = self.unsubscribe_idle if self._leaving else self.idle_timeout
                if self._wait_readable(conn, quiet):
                    self._read_available(conn)
                else:
                    with self._lock:
                        self._unsubscribe_leaving(conn)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if not self._stopping.is_set():
                    logger.warning("%s: result connection lost (%s); reconnecting", self.name, exc)
                with self._lock:
                    self._disconnect()
            except Exception:
                logger.exception("%s: unexpected error reading results", self.name)
                with self._lock:
                    self._disconnect()
                self._stopping.wait(backoff)

    def _connect(self) -> bool:
        conn = self._pool.make_connection()
        try:
            conn.connect()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            logger.warning("%s: cannot reach the result backend (%s); retrying", self.name, exc)
            return False
        with self._lock:
            self._conn = conn
            self._reader = _direct_reader(conn)
            self._leaving.clear()
            channels = [self._prefix + task_id for task_id in self._pending]
            for start in range(0, len(channels), 1000):
                self._send("SUBSCRIBE", *channels[start : start + 1000])
        return True

    def _wait_readable(self, conn: Any, timeout: float) -> bool:
        """Block (without the lock) until the connection has something to read."""
        if isinstance(conn, fakeredis.FakeRedisConnection):
            return bool(conn.can_read(timeout=timeout))
        sock = conn._sock
        if sock is None:
            raise redis.ConnectionError("the result connection is closed")
        readable, _, _ = select.select([sock], [], [], timeout)
        return bool(readable)

    def _read_available(self, conn: Any) -> None:
        messages: list[tuple[str, bytes]] = []
        reader = self._reader
        data = _recv(conn) if reader is not None else b""
        with self._lock:
            if self._conn is not conn:
                return
            if reader is not None:
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    self._handle(reply, messages)
            else:
                while self._conn is conn and conn.can_read(timeout=0):
                    self._handle(conn.read_response(), messages)
            if len(self._leaving) >= self.unsubscribe_batch:
                self._unsubscribe_leaving(conn)
        for task_id, raw in messages:
            try:
                self._on_message(task_id, raw)
            except Exception:
                logger.exception("%s: result listener failed for %s", self.name, task_id)

    def _handle(self, reply: Any, messages: list[tuple[str, bytes]]) -> None:
        """Act on one reply (lock held); a result message is added to `messages` for the
        backend. Unsubscribe confirmations (one per channel) are passed over first."""
        if type(reply) is not list or len(reply) < 3:
            return
        kind, channel = reply[0], reply[1]
        if (kind != b"message" and kind != b"subscribe") or not isinstance(channel, bytes):
            return
        task_id = channel.decode()[len(self._prefix) :]
        pending = self._pending.get(task_id)
        if pending is None:
            return  # a late message or confirmation after forget/unsubscribe
        if kind == b"subscribe":
            pending.generation += 1
            pending.subscribed = True
            if pending.waiters is not None:
                _wake(pending)
            return
        raw = reply[2]
        if not isinstance(raw, bytes):
            return
        ready = _ready_state(raw)
        self._update(pending, raw, ready)
        if ready:
            self._done(task_id, raw)
        messages.append((task_id, raw))

    def _update(self, pending: Pending, raw: bytes, ready: bool) -> None:
        pending.raw = raw
        pending.ready = ready
        pending.version += 1
        if pending.waiters is not None:
            _wake(pending)

    def _done(self, task_id: str, raw: bytes) -> None:
        """`task_id` is ready: cached, no longer watched, its channel left for a batch."""
        del self._pending[task_id]
        self._ready[task_id] = raw
        if len(self._ready) > self.ready_cache_size:
            self._ready.popitem(last=False)
        self._leaving[task_id] = None

    # connection (lock held) ----------------------------------------------------------------
    def _unsubscribe_leaving(self, conn: Any) -> None:
        """UNSUBSCRIBE the channels of the ready (and forgotten) tasks, in one command."""
        if self._leaving and self._conn is conn:
            channels = [self._prefix + task_id for task_id in self._leaving]
            self._leaving.clear()
            self._send("UNSUBSCRIBE", *channels)

    def _send(self, *args: Any) -> None:
        try:
            if self._reader is not None:  # hiredis: its packer, written straight to the socket
                sock = self._conn._sock
                if sock is None:
                    raise redis.ConnectionError("the result connection is closed")
                sock.sendall(hiredis.pack_command(args))
            else:
                self._conn.send_command(*args, check_health=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            logger.warning("%s: result connection lost (%s); reconnecting", self.name, exc)
            self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._reader = None
        self._leaving.clear()  # the connection's subscriptions end with it
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # closing a broken socket can fail again; it is gone either way
                logger.debug("%s: error closing the result connection", self.name, exc_info=True)
        for pending in self._pending.values():
            pending.subscribed = False


def _wake(pending: Pending) -> None:
    """Release every waiter of `pending` (listener lock held)."""
    waiters, pending.waiters = pending.waiters, None
    for lock in waiters or ():
        lock.release()


def _direct_reader(conn: Any) -> Any:
    """A hiredis reader for `conn`'s replies, where reading its socket directly is right:
    hiredis installed, a plain TCP or Unix socket (TLS buffers data select cannot see)."""
    if hiredis is None or type(conn) not in (redis.Connection, redis.UnixDomainSocketConnection):
        return None
    return hiredis.Reader()


def _recv(conn: Any) -> bytes:
    """What the (readable) socket holds; a closed connection is a ConnectionError."""
    sock = conn._sock
    data = sock.recv(65536) if sock is not None else b""
    if not data:
        raise redis.ConnectionError("the result connection was closed")
    return data
