"""StateDB: revoked ids and the logical clock survive a worker restart (``statedb=path``).

The state is one JSON file, replaced atomically (write a temporary file beside it, then
``os.replace``). JSON rather than Celery's ``shelve`` on purpose: loading it never
unpickles anything, it is one file with the same format on every platform (``shelve``
picks a dbm backend by what is installed, with different file names), and a teacher can
open it to show what the worker remembers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from typing import Any

from ...bootsteps import Step

__all__ = ["StateDB"]

logger = logging.getLogger(__name__)

FORMAT = "nbqueue-statedb"
VERSION = 1


class StateDB(Step):
    """Loads the saved state at start; saves it at stop and every `interval` s when changed.

    Revoked ids keep their revocation time, so ids that expired while the worker was down
    are not brought back. The clock is moved forward past the saved value (never back).
    """

    requires = ("timer",)

    def __init__(self, worker: Any, *, interval: float = 10.0) -> None:
        super().__init__(worker, interval=interval)
        self.path = os.fspath(worker.options.statedb or "")
        self.interval = interval
        self.saves = 0
        self._lock = threading.Lock()
        self._saved: dict[str, Any] | None = None
        self._entry: Any = None

    def include(self, worker: Any) -> bool:
        return bool(worker.options.statedb)

    def start(self, worker: Any) -> None:
        self.load()
        self.save()  # fails now, naming the path, rather than at stop with the state lost
        self._entry = worker.steps["timer"].timer.call_repeatedly(self.interval, self.sync)

    def stop(self, worker: Any) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.cancel()
        self.save()

    # reading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Merge the saved revoked ids and clock into the worker's (no file: a first run)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            revoked, clock = _parse(data)
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError) as exc:
            self._set_aside(exc)
            return
        state = self.parent.state
        for task_id, stamp in revoked:
            state.revoked.add(task_id, now=stamp)
        self.parent.app.clock.adjust(clock)
        logger.info(
            "%s: restored %d revoked id(s) and clock %d from %s",
            self.parent.hostname,
            len(state.revoked),
            clock,
            self.path,
        )

    def _set_aside(self, exc: BaseException) -> None:
        """Keep an unreadable file (renamed) for a human, and start with an empty state."""
        aside = f"{self.path}.corrupt-{int(time.time())}"
        os.replace(self.path, aside)
        logger.error(
            "%s: state file %s is unreadable (%s); moved it to %s and started afresh",
            self.parent.hostname,
            self.path,
            exc,
            aside,
        )

    # writing ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What would be written now."""
        revoked = self.parent.state.revoked.as_dict()
        return {
            "format": FORMAT,
            "version": VERSION,
            "clock": self.parent.app.clock.value,
            "revoked": [[task_id, stamp] for task_id, stamp in revoked.items()],
        }

    def sync(self) -> bool:
        """Save if anything changed since the last save (the periodic tick); True if saved."""
        try:
            with self._lock:
                data = self.snapshot()
                if data == self._saved:
                    return False
                self._write(data)
                return True
        except OSError:
            logger.exception("%s: could not save the state to %s", self.parent.hostname, self.path)
            return False

    def save(self) -> None:
        """Write the state now, atomically."""
        with self._lock:
            self._write(self.snapshot())

    def _write(self, data: dict[str, Any]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._saved = data
        self.saves += 1

    def info(self) -> dict[str, Any]:
        return {"path": self.path, "saves": self.saves}


def _parse(data: Any) -> tuple[list[tuple[str, float]], int]:
    """``(revoked, clock)`` from a loaded file; ValueError when it is not ours."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not an nbqueue state file")
    if data.get("version") != VERSION:
        raise ValueError(f"state file version {data.get('version')!r}, expected {VERSION}")
    revoked = [(str(task_id), float(stamp)) for task_id, stamp in data["revoked"]]
    return revoked, int(data["clock"])
