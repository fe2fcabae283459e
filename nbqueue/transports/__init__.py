"""kombu transports of our own: the in-process broker and an in-process fake Redis.

Importing this package registers the URL schemes ``nbmemory://``, ``fakeredis://`` and
``nbredis://`` (what nbqueue's ``redis://`` maps to)
with kombu, so that a Celery app in the same process can use them too
(``Celery(broker="nbmemory://<namespace>")`` shares an nbqueue app's queues).
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

__all__ = ["FAKEREDIS_SCHEME", "MEMORY_SCHEME", "REDIS_SCHEME"]

MEMORY_SCHEME = "nbmemory"
FAKEREDIS_SCHEME = "fakeredis"
#: nbqueue's ``redis://``: kombu's Redis transport with one client per channel
REDIS_SCHEME = "nbredis"

TRANSPORT_ALIASES.setdefault(MEMORY_SCHEME, "nbqueue.transports.memory:Transport")
TRANSPORT_ALIASES.setdefault(FAKEREDIS_SCHEME, "nbqueue.transports.fakeredis:Transport")
TRANSPORT_ALIASES.setdefault(REDIS_SCHEME, "nbqueue.transports.redis:Transport")
