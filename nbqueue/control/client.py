"""The client side of remote control: ``app.control`` and ``app.control.inspect()``.

Requests go out on kombu's pidbox (the ``<control_exchange>.pidbox`` fanout exchange);
replies come back on a reply queue of the caller's own. ``broadcast`` and the control
methods return Celery's raw list ``[{node: reply}, ...]``; `Inspect` methods merge it into
``{node: reply}`` (``None`` when nobody answered, as in Celery).

On the in-process transport the client knows how many nodes are listening, so it stops
waiting as soon as all of them answered instead of always waiting ``timeout`` seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from kombu.matcher import match
from kombu.pidbox import Mailbox

from ..exceptions import BrokerError
from .control_commands import CONTROL_COMMANDS
from .inspect_commands import INSPECT_COMMANDS
from .registry import CommandRegistry

__all__ = ["Control", "Inspect", "flatten_reply"]

Reply = list[dict[str, Any]]


def flatten_reply(replies: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``[{"a": x}, {"b": y}]`` → ``{"a": x, "b": y}``."""
    nodes: dict[str, Any] = {}
    for reply in replies:
        nodes.update(reply)
    return nodes


class Control:
    """Remote control of an app's workers (``app.control``), Celery's API.

    ``commands`` is this app's command registry: what its workers answer.
    """

    def __init__(self, app: Any) -> None:
        conf = app.conf
        self.app = app
        self.commands = CommandRegistry((*INSPECT_COMMANDS, *CONTROL_COMMANDS))
        self.mailbox = Mailbox(
            conf.control_exchange,
            type="fanout",
            accept=["json"],  # never unpickle a control message
            serializer="json",
            clock=app.clock,
            queue_ttl=conf.control_queue_ttl,
            reply_queue_ttl=conf.control_queue_ttl,
            queue_expires=conf.control_queue_expires,
            reply_queue_expires=conf.control_queue_expires,
        )

    def inspect(
        self,
        destination: Any = None,
        timeout: float = 1.0,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        connection: Any = None,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> Inspect:
        """Read-only queries: ``app.control.inspect(timeout=2).active()``."""
        return Inspect(
            self,
            destination=destination,
            timeout=timeout,
            callback=callback,
            connection=connection,
            limit=limit,
            pattern=pattern,
            matcher=matcher,
        )

    # sending ----------------------------------------------------------------------------
    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Any = None,
        connection: Any = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        channel: Any = None,
        pattern: str | None = None,
        matcher: str | None = None,
        **extra_kwargs: Any,
    ) -> Reply | None:
        """Send `command` to every node (or `destination`, or those matching `pattern`).

        Returns the replies ``[{node: reply}, ...]`` when ``reply`` is true, else None.
        """
        if isinstance(destination, str):
            destination = [destination]
        arguments = dict(arguments or {}, **extra_kwargs)
        options: dict[str, Any] = {"channel": channel}
        if pattern:
            options.update(pattern=pattern, matcher=matcher or "glob")
        wanted = reply
        given = contextlib.nullcontext(connection) if connection is not None else None
        with given or self.app.connection() as conn:
            if reply and limit is None:
                limit = self._expected_replies(conn, destination, pattern, options.get("matcher"))
                if limit == 0:  # nobody listens: nothing to wait for
                    reply, limit = False, None
            try:
                replies = self.mailbox(conn)._broadcast(
                    command, arguments, destination, reply, timeout, limit, callback, **options
                )
            except conn.connection_errors + conn.channel_errors as exc:
                raise BrokerError(f"could not send {command!r} to {conn.as_uri()}: {exc}") from exc
        if wanted and replies is None:
            return []
        return replies

    def listening_nodes(self, connection: Any) -> list[str] | None:
        """Names of the nodes listening on the mailbox, where the transport can tell."""
        bound_queues = getattr(connection.transport, "bound_queues", None)
        if bound_queues is None:
            return None
        suffix = f".{self.mailbox.namespace}.pidbox"
        queues = bound_queues(self.mailbox.exchange.name)
        return [q[: -len(suffix)] for q in queues if q.endswith(suffix)]

    def _expected_replies(
        self, conn: Any, destination: list[str] | None, pattern: str | None, matcher: Any
    ) -> int | None:
        """How many replies will come, where the transport can tell (else None: wait)."""
        nodes = self.listening_nodes(conn)
        if nodes is None:
            return None
        if destination:
            nodes = [node for node in nodes if node in destination]
        elif pattern:
            nodes = [node for node in nodes if match(node, pattern, matcher)]
        return len(nodes)

    # Celery's control methods -------------------------------------------------------------
    def ping(self, destination: Any = None, timeout: float = 1.0, **kwargs: Any) -> Reply | None:
        """``[{node: {"ok": "pong"}}, ...]``."""
        return self.broadcast(
            "ping", reply=True, destination=destination, timeout=timeout, **kwargs
        )

    def revoke(
        self,
        task_id: str | list[str],
        destination: Any = None,
        terminate: bool = False,
        signal: str = "SIGTERM",
        **kwargs: Any,
    ) -> Reply | None:
        """Tell workers never to run these ids (and stop them if ``terminate``)."""
        arguments = {"task_id": task_id, "terminate": terminate, "signal": signal}
        return self.broadcast("revoke", arguments, destination=destination, **kwargs)

    def terminate(
        self, task_id: str | list[str], destination: Any = None, signal: str = "SIGTERM", **kw: Any
    ) -> Reply | None:
        return self.revoke(task_id, destination=destination, terminate=True, signal=signal, **kw)

    def rate_limit(
        self, task_name: str, rate_limit: Any, destination: Any = None, **kwargs: Any
    ) -> Reply | None:
        """Change a task type's rate limit (``"10/s"``; ``None`` lifts it) on the workers."""
        arguments = {"task_name": task_name, "rate_limit": rate_limit}
        return self.broadcast("rate_limit", arguments, destination=destination, **kwargs)

    def time_limit(
        self,
        task_name: str,
        soft: float | None = None,
        hard: float | None = None,
        destination: Any = None,
        **kwargs: Any,
    ) -> Reply | None:
        """Change a task type's soft and hard time limits on the workers."""
        arguments = {"task_name": task_name, "soft": soft, "hard": hard}
        return self.broadcast("time_limit", arguments, destination=destination, **kwargs)

    def add_consumer(
        self,
        queue: str,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
        options: dict[str, Any] | None = None,
        destination: Any = None,
        **kwargs: Any,
    ) -> Reply | None:
        """Tell workers to consume another queue."""
        arguments = dict(
            options or {},
            queue=queue,
            exchange=exchange,
            exchange_type=exchange_type,
            routing_key=routing_key,
        )
        return self.broadcast("add_consumer", arguments, destination=destination, **kwargs)

    def cancel_consumer(self, queue: str, destination: Any = None, **kwargs: Any) -> Reply | None:
        return self.broadcast("cancel_consumer", {"queue": queue}, destination, **kwargs)

    def enable_events(self, destination: Any = None, **kwargs: Any) -> Reply | None:
        return self.broadcast("enable_events", {}, destination, **kwargs)

    def disable_events(self, destination: Any = None, **kwargs: Any) -> Reply | None:
        return self.broadcast("disable_events", {}, destination, **kwargs)

    def pool_grow(self, n: int = 1, destination: Any = None, **kwargs: Any) -> Reply | None:
        return self.broadcast("pool_grow", {"n": n}, destination, **kwargs)

    def pool_shrink(self, n: int = 1, destination: Any = None, **kwargs: Any) -> Reply | None:
        return self.broadcast("pool_shrink", {"n": n}, destination, **kwargs)

    def autoscale(self, max: int, min: int, destination: Any = None, **kwargs: Any) -> Reply | None:
        return self.broadcast("autoscale", {"max": max, "min": min}, destination, **kwargs)

    def shutdown(self, destination: Any = None, **kwargs: Any) -> Reply | None:
        """Stop workers (warm); they send no reply."""
        return self.broadcast("shutdown", {}, destination, **kwargs)

    def heartbeat(self, destination: Any = None, **kwargs: Any) -> Reply | None:
        """Ask workers for a worker-heartbeat event now."""
        return self.broadcast("heartbeat", {}, destination, **kwargs)

    def election(
        self,
        id: str,
        topic: str,
        action: Any = None,
        connection: Any = None,
        *,
        force: bool = False,
    ) -> None:
        """Elect one worker to run `action` (topic ``"task"``: a signature to apply).

        Refuses when fewer than two workers answer a ping, unless ``force``: a lone
        Celery 5.7 worker crashes on an election.
        """
        if not force:
            alive = flatten_reply(self.ping(connection=connection) or [])
            if len(alive) < 2:
                raise ValueError(
                    f"election needs two or more live workers, found {sorted(alive)}: a lone "
                    "Celery 5.7 worker crashes on one (pass force=True to send it anyway)"
                )
        arguments = {"id": id, "topic": topic, "action": action}
        self.broadcast("election", arguments, connection=connection)

    def __repr__(self) -> str:
        return f"<Control of {self.app.main!r}: {len(self.commands)} commands>"


class Inspect:
    """Read-only queries answered by the workers, merged into ``{node: reply}``."""

    def __init__(
        self,
        control: Control,
        *,
        destination: Any = None,
        timeout: float = 1.0,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        connection: Any = None,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> None:
        self.control = control
        self.app = control.app
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.connection = connection
        self.limit = limit
        self.pattern = pattern
        self.matcher = matcher

    def _prepare(self, replies: Reply | None) -> Any:
        if not replies:
            return None
        by_node = flatten_reply(replies)
        if isinstance(self.destination, str):
            return by_node.get(self.destination)
        if self.pattern:
            return {
                node: value
                for node, value in by_node.items()
                if match(node, self.pattern, self.matcher or "glob")
            }
        return by_node

    def _request(self, command: str, **kwargs: Any) -> Any:
        """Send any inspect command (custom ones too) and merge the replies."""
        return self._prepare(
            self.control.broadcast(
                command,
                arguments=kwargs,
                destination=self.destination,
                callback=self.callback,
                connection=self.connection,
                limit=self.limit,
                timeout=self.timeout,
                reply=True,
                pattern=self.pattern,
                matcher=self.matcher,
            )
        )

    def ping(self, destination: Any = None) -> Any:
        if destination is not None:
            self.destination = destination
        return self._request("ping")

    def stats(self) -> Any:
        return self._request("stats")

    def active(self, safe: Any = None) -> Any:
        return self._request("active", safe=safe)

    def reserved(self, safe: Any = None) -> Any:
        return self._request("reserved")

    def scheduled(self, safe: Any = None) -> Any:
        return self._request("scheduled")

    def registered(self, *taskinfoitems: str) -> Any:
        return self._request("registered", taskinfoitems=taskinfoitems)

    registered_tasks = registered

    def revoked(self) -> Any:
        return self._request("revoked")

    def active_queues(self) -> Any:
        return self._request("active_queues")

    def conf(self, with_defaults: bool = False) -> Any:
        return self._request("conf", with_defaults=with_defaults)

    def report(self) -> Any:
        return self._request("report")

    def clock(self) -> Any:
        return self._request("clock")

    def query_task(self, *ids: Any) -> Any:
        if ids and isinstance(ids[0], (list, tuple)):
            ids = tuple(ids[0])
        return self._request("query_task", ids=list(ids))

    def hello(self, from_node: str, revoked: Any = None) -> Any:
        return self._request("hello", from_node=from_node, revoked=revoked)

    def __repr__(self) -> str:
        return f"<Inspect destination={self.destination!r} timeout={self.timeout}>"
