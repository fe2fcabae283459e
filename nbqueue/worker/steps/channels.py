"""Helpers for the steps that broadcast or consume on the worker's connection."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["close_consumer", "supports_broadcast"]

logger = logging.getLogger(__name__)


def supports_broadcast(app: Any) -> bool:
    """Whether the app's broker has fanout exchanges (in-process, Redis, AMQP: yes)."""
    connection = app.connection()
    try:
        return bool(connection.supports_exchange_type("fanout"))
    finally:
        connection.release()


def close_consumer(consumer: Any, channel: Any) -> None:
    """Cancel `consumer` and close `channel` (in the loop thread); a dead connection is
    expected after a connection loss, so failures are logged at debug level only."""
    for close in (getattr(consumer, "cancel", None), getattr(channel, "close", None)):
        if close is None:
            continue
        try:
            close()
        except Exception:
            logger.debug("closing a consumer or its channel failed", exc_info=True)
