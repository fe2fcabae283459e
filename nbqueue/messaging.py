"""The app's broker: connections by URL, a pool of producers, and publishing task messages.

Publishing goes through kombu's producer (declares, ``task_publish_retry_policy``,
errors) except on nbqueue's own transports: in-process queues take the envelope
directly, and on ``redis://`` an anonymous-exchange publish to a queue the producer has
declared is one ``LPUSH`` of kombu's envelope, back to the producer on any broker error.
"""

from __future__ import annotations

import contextlib
import threading
from base64 import b64encode
from collections.abc import Iterator
from typing import Any

from kombu import Connection, Exchange, Producer
from kombu.entity import maybe_delivery_mode
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from . import serialization, transports
from .exceptions import BrokerError
from .protocol import TaskMessage, new_id
from .routing import Route
from .transports import fakeredis, memory
from .transports import redis as redis_transport

__all__ = ["Broker", "resolve_broker_url"]


def resolve_broker_url(url: str, default_namespace: str) -> str:
    """Map ``memory://[name]`` onto nbqueue's in-process transport and ``redis://`` onto
    ``nbredis://`` (kombu's Redis transport, one client per channel); pass others through."""
    scheme, _, rest = url.partition("://")
    if scheme == "memory":
        name = rest.strip("/") or default_namespace
        return f"{transports.MEMORY_SCHEME}://{name}"
    if scheme == "redis":
        return f"{transports.REDIS_SCHEME}://{rest}"
    return url


#: task message properties `Producer.publish` takes as named arguments
_NAMED_PROPERTIES = frozenset({"priority", "delivery_mode", "expiration"})


def _extra_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """The properties `Producer.publish` takes as keywords (in order): the rest of them."""
    return {k: v for k, v in properties.items() if k not in _NAMED_PROPERTIES}


class Broker:
    """Connections and producers for one app. Producers are pooled, one per thread at a time."""

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url
        self._idle: list[Producer] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        # the in-process namespace, held so it lives as long as the app (and for the fast path)
        self.space = (
            memory.namespace(memory.namespace_name(self.connection())) if self.is_memory else None
        )
        # an in-process fake Redis lives as long as someone holds it: the app does
        self.fake_server = (
            fakeredis.server_for_url(url)[0]
            if url.startswith(f"{transports.FAKEREDIS_SCHEME}://")
            else None
        )

    @property
    def display_url(self) -> str:
        """The broker URL as the app was given it, password masked (for messages)."""
        return maybe_sanitize_url(str(self.app.conf.broker_url))

    @property
    def is_memory(self) -> bool:
        """Whether messages never leave this process (so code need not travel by value)."""
        return self.url.startswith(f"{transports.MEMORY_SCHEME}://")

    def connection(self, **overrides: Any) -> Connection:
        """A new (unconnected) kombu connection to this broker."""
        conf = self.app.conf
        options: dict[str, Any] = {
            "transport_options": dict(conf.broker_transport_options),
            "connect_timeout": conf.broker_connection_timeout,
            "heartbeat": conf.broker_heartbeat,
        }
        options.update(overrides)
        return Connection(self.url, **options)

    # producers ---------------------------------------------------------------------------
    def _connect_policy(self) -> dict[str, Any]:
        """How a client's first connection retries: as its publishes do (Celery's producers
        connect inside the publish, under ``task_publish_retry_policy``)."""
        conf = self.app.conf
        if not conf.task_publish_retry or self.is_memory:
            return {"max_retries": 0}
        keys = ("max_retries", "interval_start", "interval_step", "interval_max", "errback")
        return {k: v for k, v in conf.task_publish_retry_policy.items() if k in keys}

    def _new_producer(self) -> Producer:
        conn = self.connection()
        policy = self._connect_policy()
        try:
            conn.ensure_connection(**policy)
            channel = conn.default_channel
        except (*conn.connection_errors, OperationalError) as exc:  # kombu wraps them
            conn.release()
            retries = policy.get("max_retries")
            raise BrokerError(
                f"cannot connect to broker {self.display_url} after {retries} retries: {exc}"
            ) from exc
        return Producer(channel, exchange=Exchange(""), auto_declare=False)

    @contextlib.contextmanager
    def producer(self) -> Iterator[Producer]:
        """A producer for this thread's exclusive use (the batch's one, inside `batch`)."""
        current = getattr(self._local, "producer", None)
        if current is not None:
            yield current
            return
        producer = self._acquire()
        healthy = False
        try:
            yield producer
            healthy = True
        finally:
            self._release(producer, healthy)

    def _acquire(self) -> Producer:
        """An idle producer, or a new one; give it back with `_release`."""
        with self._lock:
            producer = self._idle.pop() if self._idle else None
        return self._new_producer() if producer is None else producer

    def _release(self, producer: Producer, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < self.app.conf.broker_pool_limit:
                self._idle.append(producer)
                return
        producer.connection.release()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Publish everything sent in this block through one producer (pipelined on Redis)."""
        if getattr(self._local, "producer", None) is not None:
            yield
            return
        with self.producer() as producer:
            self._local.producer = producer
            try:
                if producer.supports_batch_publish:
                    with producer.batch():
                        yield
                else:
                    yield
            finally:
                self._local.producer = None

    # publishing --------------------------------------------------------------------------
    def publish_task(self, message: TaskMessage, route: Route, serializer: str) -> None:
        """Serialize `message`'s body and publish it to `route`."""
        key = self.app.secret_key if serializer != "json" else None
        content_type, encoding, payload = serialization.dumps(message.body, serializer, key=key)
        if self.space is not None and not route.exchange:
            self._put_in_process(message, route, content_type, encoding, payload)
            return
        # `producer()` by hand: its generator costs more than this publish's own work
        current = getattr(self._local, "producer", None)
        producer = self._acquire() if current is None else current
        healthy = False
        try:
            declared = producer.__dict__.get("_nbqueue_declared")
            if declared is None:
                declared = producer.__dict__["_nbqueue_declared"] = set()
            if (
                route.exchange
                or route.queue.name not in declared
                or not self._put_direct(producer, message, route, content_type, encoding, payload)
            ):
                self._publish(producer, message, route, content_type, encoding, payload, declared)
            healthy = True
        finally:
            if current is None:
                self._release(producer, healthy)

    def _publish(
        self,
        producer: Producer,
        message: TaskMessage,
        route: Route,
        content_type: str,
        encoding: str,
        payload: Any,
        declared: set[str],
    ) -> None:
        """Publish through kombu's producer: declares, retries, raises `BrokerError`."""
        props = message.properties
        expiration = props.get("expiration")
        conf = self.app.conf
        retry = bool(conf.task_publish_retry) and not self.is_memory
        declare = [] if route.queue.name in declared else [route.queue]
        try:
            producer.publish(
                payload,
                exchange=route.exchange,
                routing_key=route.routing_key,
                content_type=content_type,
                content_encoding=encoding,
                headers=message.headers,
                priority=props.get("priority") or 0,
                delivery_mode=props.get("delivery_mode", 2),
                expiration=None if expiration is None else int(expiration) / 1000,
                declare=declare,
                retry=retry,
                retry_policy=conf.task_publish_retry_policy if retry else None,
                **_extra_properties(props),
            )
            declared.add(route.queue.name)
        except (
            *producer.connection.connection_errors,
            *producer.connection.channel_errors,
            OperationalError,  # what kombu raises once its publish retries are spent
        ) as exc:
            raise BrokerError(
                f"could not publish task {message.name}[{message.id}] to "
                f"{producer.connection.as_uri()}: {exc}"
            ) from exc

    def _put_direct(
        self,
        producer: Producer,
        message: TaskMessage,
        route: Route,
        content_type: str,
        encoding: str,
        payload: Any,
    ) -> bool:
        """The anonymous-exchange publish on nbqueue's Redis transport in one ``LPUSH``,
        without kombu's producer and retry wrapper (~10 µs of CPU a task); False when that
        does not apply or the broker fails: then `_publish` sends it, retrying by the policy
        (a push whose reply was lost may land twice, as with kombu's own retries).

        The envelope is built by the same steps as kombu's (`Producer.publish`, the
        channel's ``prepare_message`` and ``_inplace_augment_message``) and
        ``Channel._put`` pushes it, so it is the kombu path's exactly. Not inside a
        `batch` (kombu pipelines that) nor for a queue this producer has not declared yet.
        """
        channel = producer.channel
        if not isinstance(channel, redis_transport.Channel) or getattr(
            producer._batch_local, "current", None
        ):
            return False
        props = message.properties
        # `Producer.publish`, `prepare_message`, `_inplace_augment_message`, step by step
        properties = _extra_properties(props)
        delivery_mode = props.get("delivery_mode", 2) or producer.exchange.delivery_mode
        if type(delivery_mode) is not int:  # names ("persistent"), as kombu maps them
            delivery_mode = maybe_delivery_mode(delivery_mode)
        properties["delivery_mode"] = delivery_mode
        expiration = props.get("expiration")
        if expiration is not None:  # `_publish`'s seconds, back to milliseconds as kombu does
            properties["expiration"] = str(int(int(expiration) / 1000 * 1000))
        body = payload.encode(encoding) if isinstance(payload, str) else payload
        properties.setdefault("delivery_info", {})
        properties.setdefault("priority", props.get("priority") or channel.default_priority)
        body_encoding = channel.body_encoding
        if body_encoding == "base64":  # kombu's Base64 codec, without its wrappers
            body = b64encode(body).decode()
        else:
            body, body_encoding = channel.encode_body(body, body_encoding)
        envelope = {
            "body": body,
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": message.headers or {},
            "properties": properties,
        }
        properties["body_encoding"] = body_encoding
        properties["delivery_tag"] = channel._next_delivery_tag()
        delivery_info = properties["delivery_info"]
        delivery_info["exchange"] = ""
        delivery_info["routing_key"] = route.routing_key
        transport = channel.connection
        try:
            channel._put(route.routing_key, envelope)
        except (*transport.connection_errors, *transport.channel_errors):
            return False
        return True

    def _put_in_process(
        self, message: TaskMessage, route: Route, content_type: str, encoding: str, payload: Any
    ) -> None:
        """The anonymous-exchange publish of our in-process transport, without the producer.

        Builds exactly the envelope kombu's virtual channel would store (see
        ``kombu.transport.virtual.Channel.prepare_message``/``basic_publish``).
        """
        properties = dict(message.properties)
        properties["delivery_info"] = {"exchange": "", "routing_key": route.routing_key}
        properties["body_encoding"] = None
        properties["delivery_tag"] = new_id()
        properties.setdefault("priority", 0)
        envelope = {
            "body": payload.encode(encoding) if isinstance(payload, str) else payload,
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": message.headers,
            "properties": properties,
        }
        assert self.space is not None
        self.space.put(route.routing_key, envelope)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for producer in idle:
            producer.connection.release()
