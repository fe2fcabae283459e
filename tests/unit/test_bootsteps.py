"""The Blueprint/Step engine: ordering, failures, states, listeners, rendering."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nbqueue import bootsteps
from nbqueue.bootsteps import Blueprint, Step
from nbqueue.exceptions import BootstepError, DependencyError


class Log(list):
    pass


def make(
    name: str, requires: tuple = (), *, fail: bool = False, include: bool = True, last: bool = False
) -> type[Step]:
    def start(self, parent):
        if fail:
            raise RuntimeError(f"{name} broke")
        parent.append(("start", name))

    def stop(self, parent):
        parent.append(("stop", name))

    return type(
        name.capitalize(),
        (Step,),
        {
            "name": name,
            "requires": requires,
            "last": last,
            "start": start,
            "stop": stop,
            "include": lambda self, parent: include,
        },
    )


A, B, C = make("a"), make("b", ("a",)), make("c", ("a", "b"))


def test_steps_start_in_dependency_order_and_stop_in_reverse():
    log = Log()
    bp = Blueprint("worker", [C, B, A]).apply(log)
    assert bp.order == ["a", "b", "c"]
    bp.start(log)
    bp.stop(log)
    assert log == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("stop", "c"),
        ("stop", "b"),
        ("stop", "a"),
    ]
    assert [r["state"] for r in bp.describe()] == ["stopped"] * 3


def test_requires_may_name_classes():
    D = make("d", (A,))
    assert Blueprint("w", [D, A]).order == ["a", "d"]


def test_last_step_starts_after_all_others():
    Z = make("z", last=True)
    bp = Blueprint("w", [Z, A, B])
    assert bp.order[-1] == "z"
    assert bp.requires("z") == ["a", "b"]


def test_unknown_dependency_names_the_steps():
    X = make("x", ("nope",))
    with pytest.raises(DependencyError, match=r"'x' requires unknown step\(s\) \['nope'\]"):
        Blueprint("worker", [X])


def test_cycle_names_the_steps():
    P, Q = make("p", ("q",)), make("q", ("p",))
    with pytest.raises(DependencyError, match=r"require each other: (p -> q -> p|q -> p -> q)"):
        Blueprint("worker", [P, Q])


def test_a_failing_step_rolls_back_the_started_ones_and_is_named():
    log = Log()
    Bad = make("bad", ("b",), fail=True)
    bp = Blueprint("worker", [A, B, Bad, C]).apply(log)
    with pytest.raises(BootstepError, match="worker step 'bad' failed to start"):
        bp.start(log)
    assert log == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]
    states = {r["name"]: r for r in bp.describe()}
    assert states["bad"]["state"] == "failed"
    assert "RuntimeError: bad broke" in states["bad"]["error"]
    assert states["c"]["state"] == "pending"


def test_excluded_steps_are_disabled_and_skipped():
    log = Log()
    Off = make("off", ("a",), include=False)
    bp = Blueprint("worker", [A, Off]).apply(log)
    bp.start(log)
    assert ("start", "off") not in log
    assert bp.state_of("off") == "disabled"


def test_listeners_see_every_transition_with_timestamps():
    log = Log()
    changes = []
    bp = Blueprint("worker", [A, B]).apply(log)
    remove = bp.add_listener(changes.append)
    bp.start(log)
    remove()
    bp.stop(log)
    assert [(c.step, c.previous, c.state) for c in changes] == [
        ("a", "pending", "starting"),
        ("a", "starting", "running"),
        ("b", "pending", "starting"),
        ("b", "starting", "running"),
    ]
    assert all(c.since > 0 for c in changes)


def test_a_failing_listener_does_not_break_the_blueprint():
    log = Log()
    bp = Blueprint("worker", [A]).apply(log)
    bp.add_listener(lambda change: 1 / 0)
    bp.start(log)
    assert bp.state_of("a") == "running"


def test_restart_stops_and_starts_a_step_and_its_dependents():
    log = Log()
    bp = Blueprint("worker", [A, B, C, make("free")]).apply(log)
    bp.start(log)
    log.clear()
    assert bp.restart(log, "b") == ["b", "c"]
    assert log == [("stop", "c"), ("stop", "b"), ("start", "b"), ("start", "c")]


def test_order_is_the_same_under_any_hash_seed():
    code = (
        "from tests.unit.test_bootsteps import make; from nbqueue.bootsteps import Blueprint;"
        "steps=[make(n) for n in 'qwertyuiop'] + [make('z', ('q','w'))];"
        "print(Blueprint('w', steps).order)"
    )
    outputs = set()
    for seed in ("0", "1", "42", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=os.getcwd(),
        )
        outputs.add(out.stdout)
    assert len(outputs) == 1


def test_renders_text_dot_and_svg():
    log = Log()
    bp = Blueprint("worker", [A, B]).apply(log)
    bp.start(log)
    rows = bp.describe()
    assert "b              worker    running   a" in bootsteps.render_text(rows)
    assert '"a" -> "b";' in bootsteps.render_dot(rows)
    svg = bootsteps.render_html(rows)
    assert svg.startswith("<svg") and svg.count("<rect") == 2 and "running" in svg


def test_duplicate_step_names_are_an_error():
    with pytest.raises(DependencyError, match="two steps are named 'a'"):
        Blueprint("w", [A, make("a")])
