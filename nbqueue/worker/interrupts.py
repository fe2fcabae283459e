"""Raise an exception inside another thread: how the threads pool enforces limits.

CPython checks for a pending *asynchronous exception* between bytecodes, so a thread
running Python code sees it within a few milliseconds. A thread blocked inside a single
C call — ``time.sleep``, waiting on a lock, ``Event``, ``Queue`` or socket, a long C loop
such as ``sum(range(10**9))``, a NumPy or hashlib call on big data — sees it only when
that call returns. Nothing can interrupt it sooner; see ``docs/task-semantics.md``.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from typing import Any

__all__ = ["SUPPORTED", "raise_in_thread", "set_async_exc"]

logger = logging.getLogger(__name__)

#: asynchronous exceptions need CPython's C API
SUPPORTED = platform.python_implementation() == "CPython"

#: ``PyThreadState_SetAsyncExc(thread_id, exc_type or None)`` as a C function: calling it
#: runs no Python frame, so a pending exception cannot be raised half-way through it
set_async_exc: Any = (
    ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
        ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
    )
    if SUPPORTED
    else None
)


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Schedule `exc_type` to be raised in the thread `thread_id`; False if not possible."""
    if set_async_exc is None:
        logger.warning(
            "cannot raise %s in another thread on %s: the limit is not enforced",
            exc_type.__name__,
            platform.python_implementation(),
        )
        return False
    # the exception class outlives the call (a module attribute), so its id is safe to pass
    return set_async_exc(thread_id, id(exc_type)) == 1
