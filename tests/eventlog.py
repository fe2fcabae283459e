"""An event recorder for tests: a receiver thread, every event kept, waits on a condition."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.helpers import wait_for


class EventLog:
    """Records every event an app's broker carries; ``wait(pred)`` returns matching events."""

    def __init__(self, app: Any, *, routing_key: str = "#", wakeup: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[Any] = []
        self.changed = threading.Condition()
        self.state = app.events.State()
        self.receiver = app.events.Receiver(handlers={"*": self._record}, routing_key=routing_key)
        original = self.receiver._receive

        def keep_raw(body: Any, message: Any) -> None:
            with self.changed:
                self.raw.append((body, message.headers, message.properties, message.delivery_info))
            original(body, message)

        self.receiver._receive = keep_raw  # type: ignore[method-assign]
        self.wakeup = wakeup

    def _record(self, event: dict[str, Any]) -> None:
        self.state.event(dict(event))
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def of_type(self, type_: str, hostname: str | None = None) -> list[dict[str, Any]]:
        with self.changed:
            return [
                e
                for e in self.events
                if e["type"] == type_ and (hostname is None or e.get("hostname") == hostname)
            ]

    def wait(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 15.0, msg: str = ""
    ) -> Any:
        def check() -> Any:
            with self.changed:
                return predicate(list(self.events))

        return wait_for(check, timeout, condition=self.changed, message=msg or str(predicate))

    def wait_type(
        self, type_: str, count: int = 1, hostname: str | None = None, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        return self.wait(
            lambda _: len(found := self.of_type(type_, hostname)) >= count and found,
            timeout,
            f"{count} {type_} event(s) from {hostname or 'anyone'}",
        )

    def __enter__(self) -> EventLog:
        self.receiver.start(wakeup=self.wakeup)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.receiver.stop()
