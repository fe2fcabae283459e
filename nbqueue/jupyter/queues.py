"""Look into a broker's queues for teaching: waiting messages, depths, purging.

Peeking never consumes: the in-process broker has ``Namespace.peek``; on Redis the
messages are read with ``LRANGE`` from kombu's priority lists, in delivery order.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from typing import Any

from .. import serialization
from ..exceptions import NbqueueError

__all__ = ["Listing", "Waiting", "peek", "purge", "queue_sizes"]


@dataclass(frozen=True)
class Waiting:
    """One waiting message: its headers, properties and decoded body."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    content_type: str
    body: Any

    @classmethod
    def from_envelope(cls, app: Any, envelope: dict[str, Any]) -> Waiting:
        properties = dict(envelope.get("properties") or {})
        content_type = envelope.get("content-type") or ""
        return cls(
            dict(envelope.get("headers") or {}),
            properties,
            content_type,
            _decode_body(app, envelope.get("body"), properties, content_type),
        )


def _decode_body(app: Any, body: Any, properties: dict[str, Any], content_type: str) -> Any:
    """The body decoded by the worker's own rules (accepted types, signed pickles only)."""
    raw = body
    if properties.get("body_encoding") == "base64" and isinstance(body, (str, bytes)):
        raw = base64.b64decode(body)
    try:
        return serialization.loads(
            raw,
            content_type,
            accept=serialization.normalize_accept(app.conf.accept_content),
            key=app.secret_key,
        )
    except NbqueueError as exc:
        size = len(raw) if isinstance(raw, (bytes, str)) else 0
        return f"<{size} bytes of {content_type or 'unknown content'}: {exc}>"


@dataclass(frozen=True)
class Listing:
    """The messages waiting in one queue, renderable as text and HTML."""

    queue: str
    messages: list[Waiting] = field(default_factory=list)
    #: how many were waiting in all (more than shown when the listing was limited)
    waiting: int | None = None

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def summary(self) -> str:
        total = len(self.messages) if self.waiting is None else self.waiting
        shown = "" if total == len(self.messages) else f", showing the first {len(self.messages)}"
        return f"{total} waiting message(s){shown}"

    def __repr__(self) -> str:
        lines = [f"{self.queue}: {self.summary}"]
        for i, msg in enumerate(self.messages):
            lines.append(
                f"[{i}] {msg.headers.get('task')}[{msg.headers.get('id')}] "
                f"priority={msg.properties.get('priority')} body={msg.body!r}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        td = '<td style="text-align:left;vertical-align:top">'  # Lab right-aligns table cells
        rows = "".join(
            f"<tr>{td}{i}</td>{td}<code>{html.escape(str(m.headers.get('task')))}</code></td>"
            f"{td}<pre>{html.escape(json.dumps(m.headers, indent=1, default=str))}</pre></td>"
            f"{td}<pre>{html.escape(json.dumps(m.properties, indent=1, default=str))}</pre></td>"
            f"{td}<pre>{html.escape(json.dumps(m.body, indent=1, default=str))}</pre></td></tr>"
            for i, m in enumerate(self.messages)
        )
        return (
            f"<div><b>{html.escape(self.queue)}</b>: {html.escape(self.summary)}"
            "<table><tr><th>#</th><th>task</th><th>headers</th><th>properties</th>"
            f"<th>body</th></tr>{rows}</table></div>"
        )


def _redis_envelopes(channel: Any, queue: str) -> list[dict[str, Any]]:
    """Envelopes in kombu's Redis priority lists, in the order BRPOP would deliver them."""
    client = channel.client
    found = []
    for priority in channel.priority_steps:
        items = client.lrange(channel._q_for_pri(queue, priority), 0, -1)
        found.extend(json.loads(item) for item in reversed(items))
    return found


def peek(app: Any, queue: str, limit: int | None = None) -> Listing:
    """The messages waiting in `queue` (oldest first), without consuming them."""
    space = app.broker.space
    if space is not None:
        envelopes = space.peek(queue)
    else:
        with app.connection() as conn:
            channel = conn.default_channel
            if not hasattr(channel, "priority_steps"):
                raise NotImplementedError(
                    f"peeking is supported on the in-process and Redis brokers, not on "
                    f"{conn.transport_cls}"
                )
            envelopes = _redis_envelopes(channel, queue)
    waiting = len(envelopes)
    if limit is not None:
        envelopes = envelopes[:limit]
    return Listing(queue, [Waiting.from_envelope(app, e) for e in envelopes], waiting)


def purge(app: Any, queue: str) -> int:
    """Delete every message waiting in `queue`; returns how many there were."""
    with app.connection() as conn:
        return int(conn.default_channel.queue_purge(queue) or 0)


def queue_sizes(app: Any, names: list[str] | None = None) -> dict[str, int]:
    """Waiting messages per queue: every queue of the in-process broker, else `names`
    (default: the default queue and those the app's running workers consume)."""
    space = app.broker.space
    if space is not None:
        sizes = space.sizes()
        return {n: sizes.get(n, 0) for n in names} if names else sizes
    names = names or sorted(
        {app.conf.task_default_queue, *(q for worker in app.workers for q in worker.queues)}
    )
    with app.connection() as conn:
        channel = conn.default_channel
        return {name: int(channel._size(name)) for name in names}
