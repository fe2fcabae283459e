"""The whole worker blueprint: every step listed, in dependency order, with live states."""

from __future__ import annotations

import pytest

from nbqueue.bootsteps import Step
from nbqueue.exceptions import BootstepError

WORKER_STEPS = {
    "timer",
    "hub",
    "pool",
    "autoscaler",
    "statedb",
    "autoreloader",
    "beat",
    "consumer",
}
CONDITIONAL = {"autoscaler", "statedb", "autoreloader", "beat"}


def _assert_dependency_order(rows):
    seen = set()
    for row in rows:
        assert set(row["requires"]) <= seen, f"{row['name']} starts before {row['requires']}"
        seen.add(row["name"])


def test_every_step_is_listed_and_conditional_ones_are_disabled_when_off(app):
    with app.worker() as worker:
        rows = worker.blueprint.describe()
        worker_rows = {r["name"]: r["state"] for r in rows if r["blueprint"] == "worker"}
        assert set(worker_rows) == WORKER_STEPS
        assert {n for n, s in worker_rows.items() if s == "disabled"} == CONDITIONAL
        assert {n for n, s in worker_rows.items() if s == "running"} == WORKER_STEPS - CONDITIONAL
        _assert_dependency_order([r for r in rows if r["blueprint"] == "worker"])
        text = worker.blueprint.text()
        assert all(f"{name:<14} worker    disabled" in text for name in CONDITIONAL)


def test_with_every_feature_on_all_steps_run_and_stop_in_reverse(app, tmp_path):
    changes = []
    worker = app.worker(autoscale=(2, 1), statedb=tmp_path / "state", beat=True, autoreload=True)
    worker.blueprint.add_listener(lambda c: changes.append((c.blueprint, c.step, c.state)))
    worker.start()
    try:
        rows = [r for r in worker.blueprint.describe() if r["blueprint"] == "worker"]
        assert {r["name"]: r["state"] for r in rows} == dict.fromkeys(WORKER_STEPS, "running")
        _assert_dependency_order(rows)
        stats = worker.statistics()
        assert {"autoscaler", "statedb", "autoreloader", "beat"} <= set(stats)
    finally:
        worker.stop()
    started = [s for bp, s, st in changes if bp == "worker" and st == "running"]
    stopped = [s for bp, s, st in changes if bp == "worker" and st == "stopped"]
    assert started == [r["name"] for r in rows]
    assert stopped == list(reversed(started))


def test_user_steps_with_options_take_part_like_any_other(app):
    log = []

    class Audit(Step):
        """Records when it starts; needs the beat and the autoscaler running first."""

        requires = ("beat", "autoscaler")

        def __init__(self, worker, *, tag="audit"):
            super().__init__(worker, tag=tag)
            self.tag = tag

        def start(self, worker):
            log.append(("start", self.tag, worker.steps["beat"].scheduler is not None))

        def stop(self, worker):
            log.append(("stop", self.tag))

        def info(self):
            return {"tag": self.tag}

    app.steps["worker"].add(Audit, tag="nightly")
    with app.worker(beat=True, autoscale=(2, 1)) as worker:
        row = next(r for r in worker.blueprint.describe() if r["name"] == "audit")
        assert row["requires"] == ["beat", "autoscaler"] and row["state"] == "running"
        assert worker.steps["audit"].info() == {"tag": "nightly"}
        names = [r["name"] for r in worker.blueprint.describe()]
        assert names.index("audit") > max(names.index("beat"), names.index("autoscaler"))
        assert names.index("audit") < names.index("consumer")
    assert log == [("start", "nightly", True), ("stop", "nightly")]


def test_a_failing_user_consumer_step_is_reported_with_its_name(app):
    class Exporter(Step):
        requires = ("tasks",)

        def start(self, worker):
            raise ConnectionRefusedError("metrics endpoint down")

    app.steps["consumer"].add(Exporter)
    worker = app.worker()
    with pytest.raises(BootstepError, match="consumer step 'exporter' failed to start"):
        worker.start()
    rows = {r["name"]: r for r in worker.blueprint.describe()}
    assert rows["exporter"]["state"] == "failed"
    assert rows["exporter"]["error"] == "ConnectionRefusedError: metrics endpoint down"
    assert rows["tasks"]["state"] == rows["pool"]["state"] == "stopped"
    assert worker.status == "stopped"
