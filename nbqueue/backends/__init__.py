"""Result backends, chosen by URL: ``memory://``, ``redis://``, ``fakeredis://``."""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from .base import Backend, exception_to_python, prepare_exception

__all__ = ["Backend", "backend_for_url", "exception_to_python", "prepare_exception"]


def backend_for_url(app: Any, url: str | None) -> Backend:
    """The backend for `url`; ``None`` or ``""`` means no results are stored (``disabled``)."""
    scheme = (url or "disabled").split("://", 1)[0].lower()
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(app, url or "memory://")
    if scheme in {"redis", "rediss", "fakeredis"}:
        from .redis import RedisBackend

        return RedisBackend(app, url)
    if scheme == "disabled":
        from .disabled import DisabledBackend

        return DisabledBackend(app, "disabled://")
    raise ConfigurationError(
        f"no result backend for {url!r}; use memory://, redis://host:port/db or fakeredis://"
    )
