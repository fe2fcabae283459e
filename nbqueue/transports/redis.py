"""``redis://`` for nbqueue's own connections: kombu's Redis transport, three small changes.

Keys, envelopes, ack emulation, priorities, visibility timeout and restore are kombu's,
untouched. What changes is only what an embedded worker needs:

* **one client per channel.** kombu builds a new ``redis.Redis`` for every publish, ack
  and delivery record (``conn_or_acquire``); on redis-py 8 that costs ~0.4 ms of CPU,
  three times per task. The channel keeps one (thread-safe: a pooled connection per
  command). BRPOP and pub/sub keep their own connections, as in kombu.
* **a loop that can be woken.** `Transport.wakeup` (another thread) makes a waiting
  ``drain_events`` return at once, through a socket pair registered with kombu's poller,
  so the worker's loop runs scheduled calls (cancel, close) without waiting for a poll.
* **a prompt close.** A channel closed while its BRPOP is outstanding would wait for the
  BRPOP's timeout (1 s) to read its reply; it sends ``CLIENT UNBLOCK`` for that
  connection first (when the server allows it), so the reply — a message or nothing — comes
  at once and is restored as kombu restores it.

nbqueue maps ``redis://`` URLs onto this transport (``nbredis://``, see
`nbqueue.messaging.resolve_broker_url`); Celery apps in the same process keep kombu's.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.eventio import READ
from kombu.utils.objects import cached_property

__all__ = ["Channel", "Transport"]


class Channel(kombu_redis.Channel):
    """kombu's Redis channel: one shared client, and a close that does not wait on BRPOP."""

    #: (socket, CLIENT ID) of the connection the BRPOPs go out on
    _brpop_id: tuple[Any, int] | None = None

    @cached_property
    def shared_client(self) -> Any:
        """The client for everything but BRPOP/pub-sub (those keep their own connection)."""
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client if client else self.shared_client

    def _disconnect_pools(self) -> None:
        super()._disconnect_pools()
        self.__dict__.pop("shared_client", None)  # later calls (restore at close) get a new pool

    def _brpop_start(self, timeout: float | None = None) -> None:
        self._remember_brpop_id()
        super()._brpop_start(timeout)

    def _remember_brpop_id(self) -> None:
        """Learn the BRPOP connection's id once per socket (to unblock it at close)."""
        connection = self.client.connection
        sock = getattr(connection, "_sock", None)
        if sock is None or (self._brpop_id is not None and self._brpop_id[0] is sock):
            return
        try:
            connection.send_command("CLIENT", "ID")
            self._brpop_id = (sock, int(connection.read_response()))
        except self.ResponseError:  # CLIENT not allowed here: close waits for the BRPOP
            self._brpop_id = (sock, -1)

    def close(self) -> None:
        if self._in_poll and self._brpop_id is not None and self._brpop_id[1] >= 0:
            try:
                self.shared_client.client_unblock(self._brpop_id[1])
            except (*self.connection_errors, self.ResponseError):
                pass  # then the BRPOP's reply comes when it times out, as in kombu
        super().close()
        self._disconnect_pools()  # the pool kombu's restore-at-close opened after its own


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel` and `wakeup`; ``nbredis://``."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._woken = False
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None

    def wakeup(self) -> None:
        """Make a ``drain_events`` waiting in another thread return now (``TimeoutError``)."""
        self._woken = True
        pair = self._wake_pair
        if pair is not None:
            with contextlib.suppress(OSError):  # full (already woken) or closed
                pair[1].send(b"\0")

    def _wake_socket(self) -> socket.socket:
        if self._wake_pair is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._wake_pair = (reader, writer)
            self.cycle.poller.register(reader, READ)
        return self._wake_pair[0]

    def _clear_wakeup(self, reader: socket.socket) -> None:
        self._woken = False
        try:
            while reader.recv(4096):
                pass
        except OSError:  # drained
            pass

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's drain, returning early (``TimeoutError``) when `wakeup` is called."""
        reader = self._wake_socket()
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self._woken:
                self._clear_wakeup(reader)
                raise TimeoutError()
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            try:
                self.cycle.get(self._deliver, timeout=remaining)
                return
            except Empty:
                continue

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        pair, self._wake_pair = self._wake_pair, None
        for sock in pair or ():
            sock.close()
