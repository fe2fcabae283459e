"""What a worker does with each delivered task message, before a pool thread runs it.

Decode (refusing unaccepted content types and bad signatures before unpickling), parse
(protocol v2 or v1), find the task (registered, or shipped by value), then drop revoked
and expired ids, hold ETA tasks on the timer, hold rate-limited ones in their bucket, and
hand the rest to the pool. Bad input is logged and rejected; the worker keeps going.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from .. import serialization, states
from ..exceptions import (
    ContentDisallowed,
    DecodeError,
    NotRegistered,
    ProtocolError,
    SecurityError,
)
from ..protocol import TaskMessage, parse_task_message
from .limits import TimeLimits
from .ratelimit import RateLimits
from .request import Request

__all__ = ["TaskHandler"]

logger = logging.getLogger(__name__)

_INVALID = (ContentDisallowed, SecurityError, DecodeError, ProtocolError)


class TaskHandler:
    """Turns kombu messages into `Request`s and routes them (pool, timer, or rejection)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.app = worker.app
        self.accept = serialization.normalize_accept(self.app.conf.accept_content)
        self.time_limits = TimeLimits(worker)
        self.rate_limits = RateLimits(worker, worker.reserve)

    def on_message(self, message: Any) -> None:
        """kombu ``on_message`` callback; runs in the loop thread and never raises."""
        try:
            self._handle(message)
        except Exception:
            logger.exception(
                "%s: failed to handle a task message; rejecting it", self.worker.hostname
            )
            self._reject(message)

    def _decode(self, message: Any) -> TaskMessage | None:
        try:
            body = serialization.loads(
                message.body, message.content_type, accept=self.accept, key=self.app.secret_key
            )
            return parse_task_message(message.headers, message.properties, body)
        except _INVALID as exc:
            logger.error(
                "%s: received invalid task message %s: %s; rejected",
                self.worker.hostname,
                _label(message),
                exc,
            )
            self.worker.stats["invalid"] += 1
            self._reject(message)
            self._fail_for_the_sender(message, exc)
            self.app.signals.task_rejected.send(sender=self.worker, message=message, exc=exc)
            return None

    def _fail_for_the_sender(self, message: Any, exc: Exception) -> None:
        """Store the refusal as the task's FAILURE when its headers name an id, so a client
        waiting on the result sees why (e.g. another secret key) instead of waiting forever;
        the rejected message is gone, so no other worker will store a result for it."""
        task_id = (getattr(message, "headers", None) or {}).get("id")
        if not isinstance(task_id, str) or not task_id:
            return
        try:
            self.app.backend.store_result(task_id, exc, states.FAILURE)
        except Exception:
            logger.exception("%s: could not store the refusal of %s", self.worker.hostname, task_id)
        self.worker.emit_task_event("task-failed", task_id, exception=repr(exc), traceback="")

    def _handle(self, message: Any) -> None:
        task_message = self._decode(message)
        if task_message is None:
            return
        code = None
        if message.content_type == serialization.CLOUDPICKLE:
            code = task_message.embed.get("nbqueue_code")
        try:
            task = self.app.tasks.resolve(task_message.name, code)
        except NotRegistered as exc:
            self._unknown(message, task_message, exc)
            return
        request = Request(self.worker, message, task_message, task, self.time_limits)
        received = self.app.signals.task_received
        if received:  # no receivers: skip building the call
            received.send(sender=self.worker, request=request)
        if self._drop_if_revoked(request):
            return
        eta = request.eta
        if eta is not None and eta > datetime.now(timezone.utc):
            self.worker.schedule_eta(request)
            return
        self.dispatch(request)

    def dispatch(self, request: Request) -> None:
        """Hand a due request to the pool, or to its rate limit's bucket."""
        bucket = self.rate_limits.bucket_for(request)
        if bucket is None:
            self.worker.reserve(request)
        else:
            self.rate_limits.submit(bucket, request)

    def _unknown(self, message: Any, task_message: TaskMessage, exc: NotRegistered) -> None:
        logger.error(
            "%s: received unregistered task of type %r (id %s); the message is rejected. "
            "Register it in the worker's app, or send importable code.",
            self.worker.hostname,
            task_message.name,
            task_message.id,
        )
        self.worker.stats["unknown"] += 1
        self.app.backend.store_result(task_message.id, exc, states.FAILURE)
        self.app.signals.task_unknown.send(
            sender=self.worker,
            message=message,
            exc=exc,
            name=task_message.name,
            id=task_message.id,
        )
        self.worker.emit_task_event(
            "task-failed", task_message.id, exception=repr(exc), traceback=""
        )
        self._reject(message)

    def _drop_if_revoked(self, request: Request) -> bool:
        """Revoked or expired: ack, store REVOKED, announce; True when dropped."""
        expired = request.expired()
        if not expired and request.id not in self.worker.state.revoked:
            return False
        logger.info(
            "%s: discarding %s task %s[%s]",
            self.worker.hostname,
            "expired" if expired else "revoked",
            request.name,
            request.id,
        )
        if expired:
            self.worker.state.revoked.add(request.id)
        self.worker.discard_revoked(request, expired=expired)
        return True

    @staticmethod
    def _reject(message: Any) -> None:
        try:
            message.reject(requeue=False)
        except Exception:
            logger.exception("could not reject message %s", _label(message))


def _label(message: Any) -> str:
    headers = getattr(message, "headers", None) or {}
    task_id = headers.get("id") or (getattr(message, "properties", None) or {}).get(
        "correlation_id"
    )
    return f"{headers.get('task', '?')}[{task_id or '?'}]"
