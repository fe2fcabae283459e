"""Settings with Celery's names and defaults; an unknown name is an error with a hint."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import timedelta
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["DEFAULTS", "Settings"]

#: Every setting nbqueue knows, with its default. Celery's name and default wherever
#: Celery has the setting; the few of our own are marked.
DEFAULTS: dict[str, Any] = {
    # broker and backend
    "broker_url": "memory://",
    "result_backend": "memory://",
    "broker_transport_options": {},
    "result_backend_transport_options": {},
    "broker_connection_retry": True,
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": 100,
    "broker_connection_timeout": 4.0,
    "broker_heartbeat": 120,
    "broker_pool_limit": 10,
    # messages
    "task_protocol": 2,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json", "cloudpickle"],
    "result_accept_content": None,
    "event_serializer": "json",
    "task_compression": None,
    "secret_key": None,  # ours: HMAC key for cloudpickled payloads (or NBQUEUE_SECRET_KEY)
    # routing
    "task_default_queue": "celery",
    "task_default_exchange": None,
    "task_default_exchange_type": "direct",
    "task_default_routing_key": None,
    "task_default_delivery_mode": 2,
    "task_default_priority": None,
    "task_queue_max_priority": None,
    "task_queues": None,
    "task_routes": None,
    "task_create_missing_queues": True,
    "task_inherit_parent_priority": False,
    "task_publish_retry": True,
    "task_publish_retry_policy": {
        "max_retries": 3,
        "interval_start": 0,
        "interval_max": 1,
        "interval_step": 0.2,
    },
    # task execution
    "task_acks_late": False,
    "task_acks_on_failure_or_timeout": True,
    "task_acks_on_failure": None,  # Celery 5.7: falls back to task_acks_on_failure_or_timeout
    "task_acks_on_timeout": None,  # Celery 5.7: falls back to task_acks_on_failure_or_timeout
    "task_reject_on_worker_lost": None,
    "task_track_started": False,
    "task_ignore_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_rate_limit": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_send_sent_event": False,
    "task_remote_tracebacks": False,
    # results
    "result_expires": timedelta(days=1),
    "result_extended": False,
    "result_chord_join_timeout": 3.0,
    "result_chord_retry_interval": 1.0,
    "result_chord_ordered": True,
    "result_failure_expires": None,  # Celery 5.7: expiry of FAILURE results (else result_expires)
    "result_chord_expires": None,  # Celery 5.7: expiry of chord join keys (else result_expires)
    # worker
    "worker_concurrency": None,
    "worker_pool": "threads",  # ours: Celery defaults to prefork, which would fork the kernel
    "worker_prefetch_multiplier": 4,
    "worker_send_task_events": False,
    "worker_enable_remote_control": True,
    "worker_heartbeat_interval": 2.0,  # ours: Celery's --heartbeat-interval as a setting
    "worker_state_db": None,
    "worker_disable_rate_limits": False,
    "worker_lost_wait": 10.0,
    "worker_timer_precision": 1.0,
    "worker_direct": False,
    "worker_agent": None,
    "worker_autoscaler": None,
    "worker_shutdown_timeout": 10.0,  # ours: seconds a warm stop waits for running tasks
    # events and control
    "event_exchange": "celeryev",
    "event_queue_prefix": "celeryev",
    "event_queue_ttl": 5.0,
    "event_queue_expires": 60.0,
    "control_exchange": "celery",
    "control_queue_ttl": 300.0,
    "control_queue_expires": 10.0,
    # beat
    "beat_schedule": {},
    "beat_max_loop_interval": 300.0,
    # time
    "enable_utc": True,
    "timezone": None,
}

_ENV_KEY = "NBQUEUE_SECRET_KEY"


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, DEFAULTS, n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


class Settings(MutableMapping[str, Any]):
    """``app.conf``: Celery's setting names, as keys and as attributes.

    Unknown names raise `ConfigurationError` with the closest known names, so a typo
    such as ``task_ack_late`` never silently does nothing.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        # Values live in the instance dict, so ``conf.name`` is a plain attribute read.
        for key, value in DEFAULTS.items():
            object.__setattr__(self, key, _copy_default(value))
        # the environment is read once, when the app is created
        object.__setattr__(self, "_env_secret_key", os.environ.get(_ENV_KEY))
        if values:
            self.update(values)

    # Mapping protocol -------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in DEFAULTS:
            raise ConfigurationError(f"unknown setting {key!r}.{_hint(key)}")
        return self.__dict__[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in DEFAULTS:
            raise ConfigurationError(f"unknown setting {key!r}.{_hint(key)}")
        object.__setattr__(self, key, value)

    def __delitem__(self, key: str) -> None:
        """Reset `key` to its default."""
        self[key] = _copy_default(DEFAULTS[key]) if key in DEFAULTS else self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(DEFAULTS)

    def __len__(self) -> int:
        return len(DEFAULTS)

    # attribute access ---------------------------------------------------------------
    def __getattr__(self, key: str) -> Any:  # only reached for names that are not settings
        if key.startswith("_"):
            raise AttributeError(key)
        raise AttributeError(f"unknown setting {key!r}.{_hint(key)}")

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    # helpers ------------------------------------------------------------------------
    def changes(self) -> dict[str, Any]:
        """The settings that differ from their defaults (what ``inspect conf`` shows)."""
        return {k: self.__dict__[k] for k in DEFAULTS if self.__dict__[k] != DEFAULTS[k]}

    def secret_key_bytes(self) -> bytes | None:
        """The HMAC key for signed pickles: ``secret_key``, else ``$NBQUEUE_SECRET_KEY`` as it was
        when the app was created."""
        key = self.secret_key or self._env_secret_key
        if key is None:
            return None
        return key if isinstance(key, bytes) else str(key).encode()

    def result_expires_seconds(self) -> float | None:
        value = self.result_expires
        if isinstance(value, timedelta):
            return value.total_seconds()
        return None if value is None else float(value)

    def __repr__(self) -> str:
        return f"<Settings {self.changes()!r}>"


def _copy_default(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value
