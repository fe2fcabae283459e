"""Agent: hosts an optional user actor next to the consumer (setting ``worker_agent``).

``worker_agent`` is a class or a ``"module:Class"`` string. The class is created as
``Agent(worker)`` when the step starts; its ``start()`` and ``stop()`` (both optional,
both expected to return quickly and to own any thread they start) follow the step.
Left out (shown as disabled) unless the setting is given.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kombu.utils.imports import symbol_by_name

from ...bootsteps import Step

__all__ = ["Agent", "AgentActor"]

logger = logging.getLogger(__name__)


class AgentActor(Protocol):
    """What ``worker_agent`` names: ``cls(worker)`` with optional ``start``/``stop``."""

    def __init__(self, worker: Any) -> None: ...


class Agent(Step):
    """Creates, starts and stops the ``worker_agent`` actor."""

    requires = ("connection",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.agent_cls: Any = worker.app.conf.worker_agent
        self.agent: Any = None

    def include(self, worker: Any) -> bool:
        return bool(self.agent_cls)

    def start(self, worker: Any) -> None:
        cls = symbol_by_name(self.agent_cls) if isinstance(self.agent_cls, str) else self.agent_cls
        self.agent = cls(worker)
        start = getattr(self.agent, "start", None)
        if start is not None:
            start()

    def stop(self, worker: Any) -> None:
        agent, self.agent = self.agent, None
        stop = getattr(agent, "stop", None)
        if stop is not None:
            stop()

    def info(self) -> dict[str, Any]:
        name = self.agent_cls if isinstance(self.agent_cls, str) else repr(self.agent_cls)
        return {"agent": name, "running": self.agent is not None}
