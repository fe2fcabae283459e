"""Task states, with Celery's names, sets and precedence."""

from __future__ import annotations

__all__ = [
    "BUILTIN_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "PROGRESS",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
    "precedence",
]

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"
#: not a Celery built-in, but the custom state everybody uses for ``update_state``
PROGRESS = "PROGRESS"

#: the states a worker records itself; anything else is a custom state (``update_state``)
BUILTIN_STATES = frozenset(
    {PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, REVOKED, REJECTED, RETRY, IGNORED}
)
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

# Highest first; custom states sit between FAILURE and REVOKED, like Celery's.
_PRECEDENCE = [SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
_CUSTOM = _PRECEDENCE.index(None)


def precedence(state: str) -> int:
    """Rank of `state`: lower is stronger (a SUCCESS is never replaced by a STARTED)."""
    try:
        return _PRECEDENCE.index(state)
    except ValueError:
        return _CUSTOM
