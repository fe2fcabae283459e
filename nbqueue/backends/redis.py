"""The Redis result backend (``redis://``, ``rediss://``, and ``fakeredis://<name>/<db>``).

Celery's layout exactly, so Celery and nbqueue read each other's results:

* a task's meta is JSON under ``celery-task-meta-<id>``, in Celery's shape and key order
  (values JSON cannot hold are signed-cloudpickle markers, see `nbqueue.backends.codec`);
* every write stores it with an expiry (``result_expires``, ``result_failure_expires``
  for failures) *and* PUBLISHes it on the channel named like the key; a stored SUCCESS is
  never overwritten — checked and written in one Lua script, one round trip;
* a saved group is ``celery-taskset-meta-<gid>`` holding ``{"result": <tuple form>}``;
* chords use Celery 5.7's Redis protocol (``<gid>.j .t .s .d .c``, `redis_lua`), so a chord
  whose header tasks run on Celery and nbqueue workers completes exactly once;
* ``result_backend_transport_options``: ``global_keyprefix`` (Celery's rule: ``_`` is
  added unless it ends in one of ``:_-.``), ``result_chord_ordered``, and redis-py's
  ``socket_timeout``/``socket_connect_timeout``/``socket_keepalive``/``retry_on_timeout``/
  ``max_connections``/``health_check_interval``/``client_name``.

Waiting never polls: a `ResultListener` thread (``nbqueue-<app>-results``) subscribes to a
task's channel before the task is sent (`on_task_call`) and wakes its waiters.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.utils.url import maybe_sanitize_url

from .. import states
from ..exceptions import BackendError
from ..transports import fakeredis as fake_transport
from ..transports.redis_commands import Commands, Script
from .base import Backend, exception_to_python, prepare_exception
from .codec import MetaCodec
from .redis_listener import Pending, ResultListener
from .redis_lua import CHORD_CLAIM_EXTEND, CHORD_CLEANUP, CHORD_PART, STORE_RESULT

__all__ = ["RedisBackend"]

TASK_PREFIX = "celery-task-meta-"
GROUP_PREFIX = "celery-taskset-meta-"
_CLIENT_OPTIONS = (
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "retry_on_timeout",
    "max_connections",
    "health_check_interval",
    "client_name",
)
#: how long a waiter waits for its subscription to be confirmed before reading the key
_CONFIRM_WAIT = 5.0


def _key_prefix(options: dict[str, Any]) -> str:
    prefix = options.get("global_keyprefix") or ""
    if prefix and prefix[-1] not in ":_-.":
        prefix += "_"
    return prefix


def _connection_pool(url: str, options: dict[str, Any], **extra: Any) -> redis.ConnectionPool:
    kwargs = {k: options[k] for k in _CLIENT_OPTIONS if k in options}
    kwargs.update(extra)
    if url.startswith("fakeredis://"):
        fake, db = fake_transport.server_for_url(url)
        return fake_transport.connection_pool(fake, db, **kwargs)
    return redis.ConnectionPool.from_url(url, **kwargs)


class RedisBackend(Backend):
    """Results in Redis (or an in-process fake Redis) with Celery's keys and JSON."""

    def __init__(self, app: Any, url: str) -> None:
        super().__init__(app, url)
        options = dict(app.conf.result_backend_transport_options or {})
        prefix = _key_prefix(options)
        self.task_prefix = prefix + TASK_PREFIX
        self.group_prefix = prefix + GROUP_PREFIX
        self.codec = MetaCodec(app)
        ordered = options.get("result_chord_ordered", app.conf.result_chord_ordered)
        self.chord_ordered = bool(ordered)
        self._pool = _connection_pool(url, options)
        # the listener's connection: RESP2, so pub/sub replies are plain arrays, and no
        # health-check PING that would read a message away
        self._listen_pool = _connection_pool(url, options, protocol=2, health_check_interval=0)
        self.client = redis.Redis(connection_pool=self._pool)
        #: the per-task commands (store, read) without redis-py's per-call overhead
        self.commands = Commands(self.client)
        self._store_script = Script(STORE_RESULT)
        self._scripts = {
            name: self.client.register_script(source)
            for name, source in (
                ("chord_part", CHORD_PART),
                ("claim_extend", CHORD_CLAIM_EXTEND),
                ("chord_cleanup", CHORD_CLEANUP),
            )
        }
        self._listener: ResultListener | None = None
        self._lock = threading.Lock()
        self._claims: dict[str, str] = {}

    # keys and errors -------------------------------------------------------------------
    def task_key(self, task_id: str) -> str:
        return self.task_prefix + task_id

    def group_key(self, group_id: str, suffix: str = "") -> str:
        return self.group_prefix + group_id + suffix

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate redis-py's errors into `BackendError` at this boundary."""
        try:
            yield
        except redis.RedisError as exc:
            where = maybe_sanitize_url(self.url)
            raise BackendError(f"result backend {where}: could not {doing}: {exc}") from exc

    def _ttl(self, state: str = states.SUCCESS) -> float | None:
        conf = self.app.conf
        if state == states.FAILURE and conf.result_failure_expires is not None:
            value = conf.result_failure_expires
            return value.total_seconds() if hasattr(value, "total_seconds") else float(value)
        return conf.result_expires_seconds()

    def _chord_ttl(self) -> int:
        value = self.app.conf.result_chord_expires
        if value is None:
            value = self._ttl()
        elif hasattr(value, "total_seconds"):
            value = value.total_seconds()
        return int(value or 0)

    # the listener ----------------------------------------------------------------------
    @property
    def listener(self) -> ResultListener:
        """The pub/sub listener (created on first use; its thread starts on first watch)."""
        listener = self._listener
        if listener is not None:
            return listener
        with self._lock:
            if self._listener is None:
                self._listener = ResultListener(
                    f"nbqueue-{self.app.main}-results",
                    self._listen_pool,
                    self.task_prefix,
                    self._on_message,
                )
            return self._listener

    def _on_message(self, task_id: str, raw: bytes) -> None:
        if self._listeners:
            self._notify(task_id, self.codec.decode(raw))

    def on_task_call(self, task_id: str) -> None:
        """Subscribe to the task's result before it is sent, as Celery's client does."""
        self.listener.watch(task_id)

    def watch(self, task_id: str) -> None:
        """Have listeners told of every later state of `task_id` (subscribed on return)."""
        self._subscribed(self.listener.watch(task_id), _CONFIRM_WAIT)

    def _subscribed(self, pending: Pending, timeout: float) -> None:
        """Wait up to `timeout` s for `pending`'s subscription to be confirmed."""
        listener = self.listener
        deadline = time.monotonic() + timeout
        while True:
            version, generation = pending.version, pending.generation
            remaining = deadline - time.monotonic()
            if pending.subscribed or pending.ready or remaining <= 0:
                return
            listener.wait(pending, version, generation, remaining)

    # storage primitives ------------------------------------------------------------------
    def _get(self, task_id: str) -> dict[str, Any] | None:
        """The stored meta; a ready one read so ends the listener's watch of `task_id`
        (it was published before the subscription took effect: no message will come)."""
        with self._errors(f"read the result of {task_id}"):
            raw = self.commands.execute("GET", self.task_key(task_id))
        if raw is None:
            return None
        meta = self.codec.decode(raw)
        if self._listener is not None and meta.get("status") in states.READY_STATES:
            self._listener.settle(task_id, raw)
        return meta

    def _set(self, task_id: str, meta: dict[str, Any], state: str) -> None:
        self._store(self.task_key(task_id), self.codec.encode(meta), state)

    def _store(self, key: str, payload: str, state: str) -> bytes | None:
        """Run the store script; returns the SUCCESS meta it refused to overwrite."""
        ttl = self._ttl(state)
        if not ttl:
            command, amount = "SET", 0
        elif ttl == int(ttl):
            command, amount = "SETEX", int(ttl)
        else:
            command, amount = "PSETEX", max(1, round(ttl * 1000))
        with self._errors(f"store {key}"):
            return self.commands.evalsha(self._store_script, (key,), (payload, command, amount))

    def _delete(self, task_id: str) -> None:
        with self._errors(f"forget {task_id}"):
            self.client.delete(self.task_key(task_id))

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        *,
        traceback: str | None = None,
        request: Any = None,
    ) -> dict[str, Any]:
        """Record `state` for `task_id`; a stored SUCCESS is never overwritten (atomically).

        Listeners hear of it through the published message, like results from elsewhere.
        """
        meta = self._build_meta(task_id, result, state, traceback, request)
        refused = self._store(self.task_key(task_id), self.codec.encode(meta), state)
        return meta if refused is None else self.codec.decode(refused)

    # waiting -------------------------------------------------------------------------------
    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        """Block until `task_id` is ready: from the listener's cache, else GET once and wait."""
        listener = self.listener
        raw = listener.ready(task_id)
        if raw is not None:
            return self.codec.decode(raw)
        pending = listener.watch(task_id)
        # subscribed before the GET: nothing falls in between
        self._subscribed(pending, _CONFIRM_WAIT if timeout is None else min(timeout, _CONFIRM_WAIT))
        if pending.ready:  # its message came with the confirmation: no GET needed
            return self.codec.decode(pending.raw)  # type: ignore[arg-type]
        pending.read_at = pending.generation  # the GET in the base's wait_for
        return super().wait_for(task_id, timeout, interval)

    def _wait(
        self, task_id: str, timeout: float | None, seen: dict[str, Any]
    ) -> dict[str, Any] | None:
        listener = self.listener
        pending = listener.entry(task_id) or listener.watch(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            version, generation = pending.version, pending.generation
            raw = pending.raw
            if raw is not None:
                meta = self.codec.decode(raw)
                if meta != seen:
                    return meta
            if generation != pending.read_at:  # (re)subscribed since the last read:
                pending.read_at = generation  # a message may have been missed
                meta = self._get(task_id)
                if meta is not None and meta != seen:
                    return meta
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            listener.wait(pending, version, generation, remaining)

    def forget(self, task_id: str) -> None:
        self._delete(task_id)
        if self._listener is not None:
            self._listener.forget(task_id)

    # groups ----------------------------------------------------------------------------------
    def save_group(self, group_id: str, result: Any) -> None:
        """``celery-taskset-meta-<gid>`` = ``{"result": <tuple form>}``, stored and published."""
        key = self.group_key(group_id)
        payload = self.codec.encode({"result": result.as_tuple()})
        ttl = self._ttl()
        with self._errors(f"save group {group_id}"), self.client.pipeline() as pipe:
            if ttl:  # Celery's SETEX (redis-py deprecates its setex(), not the command)
                pipe.execute_command("SETEX", key, max(1, math.ceil(ttl)), payload)
            else:
                pipe.set(key, payload)
            pipe.publish(key, payload)
            pipe.execute()

    def restore_group(self, group_id: str) -> Any:
        with self._errors(f"read group {group_id}"):
            raw = self.client.get(self.group_key(group_id))
        return None if raw is None else self.codec.decode(raw)["result"]

    def delete_group(self, group_id: str) -> None:
        with self._errors(f"delete group {group_id}"):
            self.client.delete(self.group_key(group_id))

    # chords: Celery 5.7's Redis protocol -------------------------------------------------------
    def set_chord_size(self, group_id: str, size: int) -> None:
        """``DEL <gid>.c`` (a reused group id is a new run), ``SET <gid>.s size EX ttl``."""
        ttl = self._chord_ttl()
        with (
            self._errors(f"set the size of chord {group_id}"),
            self.client.pipeline(transaction=False) as pipe,
        ):
            pipe.delete(self.group_key(group_id, ".c"))
            pipe.set(self.group_key(group_id, ".s"), size, ex=ttl or None)
            pipe.execute()

    def add_chord_part(
        self, group_id: str, task_id: str, index: int | None, state: str, value: Any
    ) -> list[tuple[str, str, Any]] | None:
        """Record one header result; the caller that completes the chord gets all of them.

        The winner holds the dispatch claim until `on_chord_body_applied` cleans up, so a
        header task redelivered in between completes the chord again instead of losing it.
        """
        keys = [self.group_key(group_id, s) for s in (".j", ".t", ".s", ".d", "", ".c")]
        if isinstance(value, BaseException):
            value = prepare_exception(value)
        token = uuid.uuid4().hex
        claim_ttl = self._claim_ttl()
        args = [
            task_id,
            self.codec.encode_part(task_id, state, value),
            1 if self.chord_ordered else 0,
            "+inf" if index is None else index,
            self._chord_ttl(),
            self._group_ttl(),
            claim_ttl,
            token,
        ]
        with self._errors(f"join chord {group_id}"):
            count, _, size, claimed = self._scripts["chord_part"](keys=keys, args=args)
        if count == -1 or not size or not claimed:
            return None
        return self._join(group_id, token, keys)

    def _join(
        self, group_id: str, token: str, keys: list[str]
    ) -> list[tuple[str, str, Any]] | None:
        joined, _, size_key, _, _, claim_key = keys
        with self._errors(f"read chord {group_id}"):
            if self.chord_ordered:
                raw_parts = self.client.zrange(joined, 0, -1)
            else:
                raw_parts = self.client.lrange(joined, 0, -1)
        parts = []
        for raw in raw_parts:
            task_id, state, value = self.codec.decode_part(raw)
            if state in states.EXCEPTION_STATES:
                value = exception_to_python(value)
            parts.append((task_id, state, value))
        if any(state in states.PROPAGATE_STATES for _, state, _ in parts):
            with self._errors(f"fail chord {group_id}"):
                self.client.delete(size_key)  # a late copy of a header task must not fail it again
            return parts
        with self._errors(f"claim chord {group_id}"):
            extended = self._scripts["claim_extend"](
                keys=[claim_key, size_key], args=[token, self._publish_claim_ttl()]
            )
        if not extended:
            return None
        self._claims[group_id] = token
        return parts

    def on_chord_body_applied(self, group_id: str) -> None:
        """The body was sent: drop the chord's keys and leave Celery's ``done`` marker."""
        token = self._claims.pop(group_id, None)
        if token is None:
            return
        keys = [self.group_key(group_id, s) for s in (".c", ".j", ".t", ".s", ".d")]
        done_ttl = int(max(self._claim_ttl() * 2, 300))
        with self._errors(f"clean up chord {group_id}"):
            self._scripts["chord_cleanup"](keys=keys, args=[token, done_ttl])

    def _claim_ttl(self) -> int:
        return max(5, int((self.app.conf.result_chord_join_timeout or 5.0) * 2))

    def _publish_claim_ttl(self) -> int:
        """The claim's life while the body is published: covers the publish retry policy."""
        conf = self.app.conf
        policy = conf.task_publish_retry_policy or {}
        retries = int(policy.get("max_retries") or 0) if conf.task_publish_retry else 0
        timeout = float(conf.broker_connection_timeout or 1.0)
        waits = sum(
            min(
                policy.get("interval_start", 0) + policy.get("interval_step", 0.2) * n,
                policy.get("interval_max", 1),
            )
            for n in range(retries)
        )
        return max(self._claim_ttl(), math.ceil((retries + 1) * timeout + waits + timeout))

    def _group_ttl(self) -> int:
        chord, results = self._chord_ttl(), self._ttl()
        return 0 if not chord or not results else max(chord, int(results))

    # lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the listener thread and close the connections."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.commands.close()
        self._pool.disconnect()
        self._listen_pool.disconnect()
