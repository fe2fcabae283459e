"""Raise an exception inside another thread: how the threads pool enforces limits.

CPython checks for a pending *asynchronous exception* between bytecodes, so a thread
running Python code sees it within a few milliseconds. A thread blocked inside a single
C call — ``time.sleep``, waiting on a lock, ``Event``, ``Queue`` or socket, a long C loop
such as ``sum(range(10**9))``, a NumPy or hashlib call on big data — sees it only when
that call returns. Nothing can interrupt it sooner; see ``docs/task-semantics.md``.

An exception raised between a lock's acquisition and the ``try``/``with`` that releases it
leaves the lock held for good (``threading.Condition.__enter__``, ``logging.Handler``'s
``acquire``, import locks). So an exception is only raised when the thread stands at a
*safe point*: its innermost frame is not in the worker's own code, kombu, redis, logging,
importlib or threading's lock plumbing (blocking in ``Condition.wait``/``Event.wait``/
``join`` is fine: those restore their locks in ``finally``). Where a waiting thread will
raise is exactly where it stands now — a running thread raises where it gave up the GIL,
a blocked one right after its C call returns — so the check is reliable; callers retry
a little later when it says no.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable
from typing import Any

import kombu
import redis

__all__ = ["SUPPORTED", "raise_in_thread", "safe_to_raise", "set_async_exc"]

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


#: thread id → (exception type, what to do if that exception is swallowed as "unraisable")
_lost: dict[int, tuple[type[BaseException], Callable[[], Any]]] = {}


def _chain_unraisable_hook() -> None:
    """Put our hook in front of ``sys.unraisablehook`` (again, if someone replaced it).

    An injected exception can surface inside a callback Python runs on the side — a
    weakref or ``__del__`` finaliser the garbage collector calls in that thread — which
    swallows it as "unraisable". The hook recognises it and lets the worker try again.
    """
    current = sys.unraisablehook
    if getattr(current, "nbqueue_previous", None) is not None:
        return

    def hook(unraisable: Any, previous: Any = current) -> None:
        entry = _lost.get(threading.get_ident())
        if entry is not None and isinstance(unraisable.exc_value, entry[0]):
            del _lost[threading.get_ident()]
            entry[1]()
            return
        previous(unraisable)

    hook.nbqueue_previous = current  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def raise_in_thread(
    thread_id: int, exc_type: type[BaseException], on_lost: Callable[[], Any] | None = None
) -> bool:
    """Schedule `exc_type` to be raised in the thread `thread_id`; False if not possible.

    `on_lost` is called (in that thread) if the exception is swallowed by a finaliser.
    """
    if on_lost is not None:
        _chain_unraisable_hook()
        _lost[thread_id] = (exc_type, on_lost)
    if set_async_exc is None:
        logger.warning(
            "cannot raise %s in another thread on %s: the limit is not enforced",
            exc_type.__name__,
            platform.python_implementation(),
        )
        return False
    # the exception class outlives the call (a module attribute), so its id is safe to pass
    return set_async_exc(thread_id, id(exc_type)) == 1


def _package_dir(module: Any) -> str:
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


#: code an exception must never land in (see the module's docstring)
_UNSAFE_PREFIXES = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # nbqueue
    _package_dir(kombu),
    _package_dir(redis),
    _package_dir(logging),
    _package_dir(importlib),
    "<frozen ",
)
_THREADING = os.path.abspath(threading.__file__)
#: threading functions that restore their locks however they are left
_SAFE_IN_THREADING = frozenset({"wait", "_wait_for_tstate_lock", "join"})


def safe_to_raise(thread_id: int) -> bool:
    """Whether an exception injected now would be raised at a safe point of the thread."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return False
    code = frame.f_code
    filename = (
        os.path.abspath(code.co_filename) if code.co_filename[:1] != "<" else code.co_filename
    )
    if filename.startswith(_UNSAFE_PREFIXES):
        return False
    return filename != _THREADING or code.co_name in _SAFE_IN_THREADING
