"""Mingle: at start-up, learn the revoked ids and the logical clock of the other workers."""

from __future__ import annotations

import logging
from typing import Any

from ...bootsteps import Step
from .channels import supports_broadcast

__all__ = ["Mingle"]

logger = logging.getLogger(__name__)


class Mingle(Step):
    """Broadcasts ``hello`` (with our revoked ids) and merges every answer: their revoked
    ids join ours, their clock moves ours forward. Runs again after a reconnection."""

    requires = ("events",)
    #: seconds to wait for answers where the transport cannot say how many will come
    timeout = 1.0

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.synced_with: list[str] = []

    def include(self, worker: Any) -> bool:
        return not worker.options.without_mingle and supports_broadcast(worker.app)

    def start(self, worker: Any) -> None:
        try:
            replies = worker.app.control.inspect(timeout=self.timeout).hello(
                worker.hostname, worker.state.revoked.as_list()
            )
        except Exception as exc:  # a failed sync is not worth failing the worker for
            logger.warning(
                "%s: mingle: could not reach the other workers: %r", worker.hostname, exc
            )
            return
        replies = {node: r for node, r in (replies or {}).items() if node != worker.hostname and r}
        self.synced_with = sorted(replies)
        if not replies:
            logger.info("%s: mingle: all alone", worker.hostname)
            return
        logger.info("%s: mingle: sync with %d nodes", worker.hostname, len(replies))
        for node, reply in replies.items():
            self._sync_with(worker, node, reply)

    def _sync_with(self, worker: Any, node: str, reply: Any) -> None:
        if not isinstance(reply, dict):
            logger.warning("%s: mingle: ignored a malformed reply from %s", worker.hostname, node)
            return
        clock = reply.get("clock")
        if isinstance(clock, int):
            worker.app.clock.adjust(clock)
        else:
            worker.app.clock.forward()
        revoked = reply.get("revoked")
        if revoked:  # a list (5.7) or a dict id → stamp (5.5): only the ids count
            worker.state.revoked.update(list(revoked))

    def info(self) -> dict[str, Any]:
        return {"synced_with": self.synced_with}
