"""Hot-path Redis commands without redis-py's per-call machinery.

On redis-py 8 one ``client.execute_command`` spends ~20 µs of CPU around the round trip:
pool checkout and release under a lock, a ``poll`` of the socket, observability counters,
a retry wrapper. The broker and the result backend send a handful of commands per task,
so `Commands` keeps connections of its own (a free list: one connection per thread that
is sending at the moment) and writes and reads each command directly, ~3× cheaper.
With hiredis installed, a command is packed by hiredis and its reply read from the socket
by a hiredis reader of our own (redis-py still connects: AUTH, SELECT, HELLO); the round
trip is then a ``sendall`` and a ``recv_into`` with ~3 µs of Python around them, where
redis-py's ``send_packed_command``/``read_response`` add ~14 µs.

Behaviour stays redis-py's: a connection error on the direct path drops that connection
and the command goes through the full client, with its retries and its errors; an error
reply is raised as the client raises it; ``EVALSHA`` loads a script the server lacks.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis
from redis.exceptions import NoScriptError

try:  # redis-py's C parser: its packer (the same bytes as redis-py's) and its reader
    import hiredis
except ImportError:  # pragma: no cover - hiredis is optional
    hiredis = None

__all__ = ["Commands", "Script"]

#: connection classes the direct path is known to be right for (fakeredis keeps the client)
_DIRECT = (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)
#: what our reader returns while a reply is incomplete
_MORE = object()


class _Link:
    """A connected redis-py connection whose socket we write and read ourselves (hiredis)."""

    __slots__ = ("buffer", "conn", "reader", "sock")

    def __init__(self, conn: Any) -> None:
        conn.connect()  # redis-py's handshake (AUTH, SELECT, HELLO) and socket options
        self.conn = conn
        self.sock = conn._sock
        self.buffer = bytearray(65536)
        self.reader = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse,
            replyError=conn._parser.parse_error,  # NOSCRIPT -> NoScriptError, as redis-py
            notEnoughData=_MORE,
        )

    def call(self, args: tuple[Any, ...]) -> Any:
        """Send one command and return its raw reply (an error reply is raised)."""
        try:
            packed = hiredis.pack_command(args)
        except TypeError as exc:  # what redis-py raises for a None, a bool, a list...
            raise redis.DataError(str(exc)) from exc
        self.sock.sendall(packed)
        reader = self.reader
        reply = reader.gets()
        while reply is _MORE:
            read = self.sock.recv_into(self.buffer)
            if not read:
                raise redis.ConnectionError("Connection closed by server.")
            reader.feed(self.buffer, 0, read)
            reply = reader.gets()
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def disconnect(self) -> None:
        self.conn.disconnect()


class _ClientLink:
    """Without hiredis: the connection's own send and read (no pool, no retry wrapper)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def call(self, args: tuple[Any, ...]) -> Any:
        self.conn.send_command(*args)
        return self.conn.read_response()

    def disconnect(self) -> None:
        self.conn.disconnect()


class Commands:
    """Sends commands for `client` on connections of its own (one per concurrent caller)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        pool = client.connection_pool
        link = _ClientLink if hiredis is None else _Link
        self._make = (
            (lambda: link(pool.connection_class(**pool.connection_kwargs)))
            if pool.connection_class in _DIRECT
            else None
        )
        self._free: list[Any] = []
        self._closed = False

    def execute(self, *args: Any) -> Any:
        """One command's raw reply (no response callbacks: ints, bytes, lists)."""
        if self._make is None or self._closed:
            return self.client.execute_command(*args)
        free = self._free
        link = None
        try:
            link = free.pop() if free else self._make()
            reply = link.call(args)
        except (redis.ResponseError, redis.DataError):
            if link is not None:  # the whole reply was read (or nothing sent): link is fine
                free.append(link)
            raise
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if link is not None:
                link.disconnect()  # then the client's own path: its retries, its errors
            return self.client.execute_command(*args)
        except BaseException:
            if link is not None:
                link.disconnect()  # interrupted mid-command: the link's state is unknown
            raise
        if self._closed:
            link.disconnect()
        else:
            free.append(link)
        return reply

    def evalsha(self, script: Script, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        """Run `script` (loading it first if the server does not know it)."""
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.execute("SCRIPT", "LOAD", script.source)
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def close(self) -> None:
        """Disconnect the idle links; busy ones are dropped when their command ends."""
        self._closed = True
        free, self._free = self._free, []
        for link in free:
            link.disconnect()


class Script:
    """A Lua script by its SHA1 (what `Commands.evalsha` runs)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
