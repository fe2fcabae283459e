"""Where a task message goes: queues, exchanges and ``task_routes``, the way Celery routes.

``task_routes`` may be a dict (exact names and glob patterns, e.g. ``{"feed.*": {"queue":
"feeds"}}``), a function ``(name, args, kwargs, options, task=None, **kw) -> dict | str |
None``, or a list/tuple of those, tried in order. A route names a ``queue`` (declared in
``task_queues`` or created on the fly when ``task_create_missing_queues``) and may set
``exchange``, ``routing_key`` and ``priority``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kombu import Exchange, Queue

from .exceptions import ConfigurationError

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    """The resolved destination of one message."""

    queue: Queue
    exchange: str
    routing_key: str
    priority: int | None = None


def _compile(pattern: str) -> re.Pattern[str] | None:
    if any(ch in pattern for ch in "*?["):
        return re.compile(fnmatch.translate(pattern))
    return None


class _MapRoute:
    """Exact names first, then glob patterns in the order given."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.exact = {k: v for k, v in table.items() if _compile(k) is None}
        self.globs = [(p, v) for k, v in table.items() if (p := _compile(k)) is not None]

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.exact:
            return self.exact[name]
        for pattern, route in self.globs:
            if pattern.match(name):
                return route
        return None


class Router:
    """Resolves ``apply_async`` options and ``task_routes`` into a `Route`."""

    def __init__(self, conf: Any) -> None:
        self.conf = conf
        self.queues: dict[str, Queue] = {}
        for queue in conf.task_queues or ():
            self.queues[queue.name] = queue
        default = conf.task_default_queue
        if default not in self.queues:
            self.queues[default] = self._new_queue(default)
        self.default_queue = self.queues[default]
        self.routers = self._routers(conf.task_routes)
        # routes depend only on names unless a router is a function of the arguments
        self._cache: dict[tuple[Any, ...], Route] | None = (
            {} if all(isinstance(r, _MapRoute) for r in self.routers) else None
        )

    @staticmethod
    def _routers(routes: Any) -> list[Callable[..., Any]]:
        if routes is None:
            return []
        if isinstance(routes, (Mapping, str)) or callable(routes):
            routes = [routes]
        out: list[Callable[..., Any]] = []
        for route in routes:
            if isinstance(route, Mapping):
                out.append(_MapRoute(route))
            elif callable(route):
                out.append(route)
            else:
                raise ConfigurationError(
                    f"task_routes entry {route!r} is neither a dict nor a function"
                )
        return out

    def _new_queue(self, name: str) -> Queue:
        exchange_name = self.conf.task_default_exchange or name
        exchange = Exchange(exchange_name, type=self.conf.task_default_exchange_type)
        routing_key = self.conf.task_default_routing_key or name
        arguments = None
        if self.conf.task_queue_max_priority is not None:
            arguments = {"x-max-priority": self.conf.task_queue_max_priority}
        return Queue(name, exchange, routing_key, queue_arguments=arguments)

    def queue(self, name: str | Queue) -> Queue:
        """The declared queue called `name`, created on first use when allowed."""
        if isinstance(name, Queue):
            self.queues.setdefault(name.name, name)
            return name
        queue = self.queues.get(name)
        if queue is None:
            if not self.conf.task_create_missing_queues:
                raise ConfigurationError(
                    f"queue {name!r} is not declared in task_queues "
                    "and task_create_missing_queues is off"
                )
            queue = self.queues[name] = self._new_queue(name)
        return queue

    def _from_routes(self, name: str, args: Any, kwargs: Any, options: dict[str, Any]):
        for router in self.routers:
            route = router(name, args, kwargs, options, task=None)
            if route:
                return {"queue": route} if isinstance(route, (str, Queue)) else dict(route)
        return {}

    def route(
        self, name: str, args: Any, kwargs: Any, options: dict[str, Any], task_queue: Any = None
    ) -> Route:
        """Resolve explicit options, then ``task_routes``, then the task's own queue."""
        cache = self._cache
        if cache is None:
            return self._route(name, args, kwargs, options, task_queue)
        key = (name, task_queue, *options.items())
        try:
            return cache[key]
        except TypeError:  # an unhashable option (a Queue object is hashable; dicts are not)
            return self._route(name, args, kwargs, options, task_queue)
        except KeyError:
            if len(cache) > 4096:
                cache.clear()
            route = cache[key] = self._route(name, args, kwargs, options, task_queue)
            return route

    def _route(
        self, name: str, args: Any, kwargs: Any, options: dict[str, Any], task_queue: Any
    ) -> Route:
        merged = {k: v for k, v in options.items() if v is not None}
        if "queue" not in merged and "exchange" not in merged:
            for key, value in self._from_routes(name, args, kwargs, options).items():
                merged.setdefault(key, value)
        if "queue" not in merged and "exchange" not in merged and task_queue is not None:
            merged["queue"] = task_queue
        queue = self.queue(merged["queue"]) if "queue" in merged else self.default_queue
        exchange = merged.get("exchange")
        if isinstance(exchange, Exchange):
            exchange = exchange.name
        routing_key = merged.get("routing_key")
        if exchange is None and routing_key is None:
            if queue.exchange is None or queue.exchange.type == "direct":
                # Celery publishes direct routes to the anonymous exchange: no binding lookups
                exchange, routing_key = "", queue.name
            else:
                exchange, routing_key = queue.exchange.name, queue.routing_key
        elif exchange is None:
            exchange = queue.exchange.name if queue.exchange is not None else ""
        elif routing_key is None:
            routing_key = queue.routing_key or queue.name
        return Route(queue, exchange, routing_key, merged.get("priority"))
