"""kombu transports of our own: the in-process broker and an in-process fake Redis.

Importing this package registers the URL schemes ``nbmemory://`` and ``fakeredis://``
with kombu, so that a Celery app in the same process can use them too
(``Celery(broker="nbmemory://<namespace>")`` shares an nbqueue app's queues).
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

__all__ = ["FAKEREDIS_SCHEME", "MEMORY_SCHEME"]

MEMORY_SCHEME = "nbmemory"
FAKEREDIS_SCHEME = "fakeredis"

TRANSPORT_ALIASES.setdefault(MEMORY_SCHEME, "nbqueue.transports.memory:Transport")
TRANSPORT_ALIASES.setdefault(FAKEREDIS_SCHEME, "nbqueue.transports.fakeredis:Transport")
