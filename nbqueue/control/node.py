"""The worker side of remote control: kombu's pidbox `Node` with Celery's reply rules.

A failing handler answers ``{"error": "<repr>"}`` (an unknown command:
``{"error": "KeyError('name')"}``), a handler returning `NO_REPLY` answers nothing, and
a reply that cannot be serialized is replaced by an error reply rather than lost.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.pidbox import Node

from .registry import NO_REPLY

__all__ = ["ControlNode"]

logger = logging.getLogger(__name__)


class ControlNode(Node):
    """One worker's mailbox node: filters by destination/pattern, dispatches, replies."""

    def handle(self, method: str, arguments: Any = None) -> Any:
        try:
            handler = self.handlers[method]
        except KeyError:
            raise KeyError(method) from None
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"arguments of {method!r} must be a mapping, not {arguments!r}")
        return handler(self.state, **(arguments or {}))

    def dispatch(
        self,
        method: str,
        arguments: Any = None,
        reply_to: Any = None,
        ticket: str | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            reply = self.handle(method, arguments)
        except Exception as exc:
            logger.error("%s: control command %r failed: %r", self.hostname, method, exc)
            reply = {"error": repr(exc)}
        if reply is NO_REPLY:
            return None
        if reply_to:
            self._send_reply(reply, reply_to, ticket)
        return reply

    def _send_reply(self, reply: Any, reply_to: dict[str, Any], ticket: str | None) -> None:
        try:
            self._reply(reply, reply_to, ticket)
        except Exception as exc:
            logger.error("%s: could not send a control reply: %r", self.hostname, exc)
            try:
                self._reply({"error": f"reply could not be sent: {exc!r}"}, reply_to, ticket)
            except Exception:
                logger.exception("%s: could not send the error reply either", self.hostname)

    def _reply(self, reply: Any, reply_to: dict[str, Any], ticket: str | None) -> None:
        self.reply(
            {self.hostname: reply},
            exchange=reply_to["exchange"],
            routing_key=reply_to["routing_key"],
            ticket=ticket,
        )
