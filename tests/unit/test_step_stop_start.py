"""Stopping one step (and what requires it) and starting it again, leaving the rest running."""

from __future__ import annotations

import pytest

from nbqueue.bootsteps import Blueprint
from nbqueue.exceptions import BootstepError
from tests.unit.test_bootsteps import A, B, C, Log, make


def started(steps: list) -> tuple[Blueprint, Log]:
    log = Log()
    bp = Blueprint("worker", steps).apply(log)
    bp.start(log)
    log.clear()
    return bp, log


def test_stop_step_stops_it_and_its_dependents_in_reverse_and_leaves_the_rest():
    bp, log = started([A, B, C, make("free", ("a",))])
    assert bp.stop_step(log, "b") == ["b", "c"]
    assert log == [("stop", "c"), ("stop", "b")]
    states = {row["name"]: row["state"] for row in bp.describe()}
    assert states == {"a": "running", "b": "stopped", "c": "stopped", "free": "running"}
    assert bp.stop_step(log, "b") == []  # already stopped: nothing to do


def test_start_step_starts_it_then_its_stopped_dependents():
    bp, log = started([A, B, C])
    bp.stop_step(log, "b")
    log.clear()
    assert bp.start_step(log, "b") == ["b", "c"]
    assert log == [("start", "b"), ("start", "c")]
    assert bp.start_step(log, "b") == []  # running already
    bp.stop(log)  # the restarted steps stop with the rest, in reverse
    assert log[-3:] == [("stop", "c"), ("stop", "b"), ("stop", "a")]


def test_a_dependent_waits_for_all_its_requirements():
    bp, log = started([A, B, C])
    bp.stop_step(log, "a")  # stops b and c too
    log.clear()
    with pytest.raises(BootstepError, match=r"'b' needs \['a'\] running first"):
        bp.start_step(log, "b")
    assert log == []
    assert bp.start_step(log, "a") == ["a", "b", "c"]


def test_only_known_and_stopped_steps_start():
    log = Log()
    bp = Blueprint("worker", [A, make("off", include=False)]).apply(log)
    with pytest.raises(BootstepError, match=r"'a' is pending: only a stopped step"):
        bp.start_step(log, "a")
    bp.start(log)
    with pytest.raises(BootstepError, match=r"'off' is disabled"):
        bp.start_step(log, "off")
    with pytest.raises(BootstepError, match=r"no step 'nope'; its steps: \['a', 'off'\]"):
        bp.stop_step(log, "nope")
