"""Connection: connects to the broker (with retries) and hands the connection to the loop."""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError

from ...bootsteps import Step
from ...exceptions import BrokerError

__all__ = ["Connection"]

logger = logging.getLogger(__name__)


class Connection(Step):
    """The consumer's broker connection; on connection loss, restarts its dependents."""

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.connection: Any = None
        self.reconnects = 0
        self._started_once = False

    def start(self, worker: Any) -> None:
        conf = worker.app.conf
        retry = (
            conf.broker_connection_retry
            if self._started_once
            else (conf.broker_connection_retry_on_startup)
        )
        conn = worker.app.connection()
        max_retries = conf.broker_connection_max_retries if retry else 0
        url = worker.app.broker.display_url
        retries = 0

        def on_retry(exc: BaseException, interval: float) -> None:
            nonlocal retries
            retries += 1
            logger.warning(
                "%s: broker %s unreachable (%s); retrying in %.1f s (%d/%s)",
                worker.hostname,
                url,
                exc,
                interval,
                retries,
                max_retries,
            )

        try:
            conn.ensure_connection(
                errback=on_retry,
                max_retries=max_retries,
                interval_start=0.2,
                interval_step=1.0,
                interval_max=10.0,
            )
        except (
            *conn.connection_errors,
            *conn.recoverable_connection_errors,
            OperationalError,  # kombu's wrapper of the transport's errors
        ) as exc:
            conn.release()
            raise BrokerError(
                f"cannot connect to broker {url} after {max_retries} retries: {exc}"
            ) from exc
        if self._started_once:
            logger.info("%s: reconnected to broker %s", worker.hostname, url)
        self.connection = conn
        self._started_once = True
        loop = worker.steps["hub"].loop
        loop.on_connection_error = self.on_connection_error
        loop.connection = conn

    def on_connection_error(self, exc: BaseException) -> None:
        """Called in the loop thread when the broker connection breaks."""
        worker = self.parent
        self.reconnects += 1
        logger.error("%s: broker connection lost (%r); reconnecting", worker.hostname, exc)
        try:
            worker.consumer_blueprint.restart(worker, self.name)
        except Exception:
            logger.exception("%s: could not reconnect; stopping the worker", worker.hostname)
            worker.stop_soon()

    def stop(self, worker: Any) -> None:
        conn, self.connection = self.connection, None
        if conn is None:
            return
        loop = worker.steps["hub"].loop

        def close() -> None:
            loop.connection = None
            conn.release()

        loop.run_sync(close)

    def info(self) -> dict[str, Any]:
        conn = self.connection
        return {
            "transport": conn.transport_cls if conn is not None else None,
            "uri": conn.as_uri() if conn is not None else None,
            "reconnects": self.reconnects,
        }
