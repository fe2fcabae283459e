"""StateDB step: revoked ids and the logical clock survive a worker restart."""

from __future__ import annotations

import json
import logging
import time

import pytest

import nbqueue
from nbqueue import states
from nbqueue.exceptions import BootstepError, TaskRevokedError
from nbqueue.worker.steps.statedb import StateDB
from tests.helpers import wait_for

#: no heartbeats, mingle or gossip: nothing else moves the clock during these tests
QUIET = {"without_heartbeat": True, "without_gossip": True, "without_mingle": True}


def _app_with_task(ran: list):
    app = nbqueue.App("statedb")

    @app.task(name="remember")
    def remember(x):
        ran.append(x)
        return x

    return app, remember


def test_disabled_without_a_path(app):
    worker = app.worker()
    assert worker.blueprint.worker.state_of("statedb") == "disabled"


def test_revoked_ids_and_clock_survive_a_restart_and_the_message_is_dropped(tmp_path):
    path = tmp_path / "worker.state"
    ran: list = []
    first, _ = _app_with_task(ran)
    with first, first.worker(statedb=path) as worker:
        worker.revoke("doomed-id")
        first.clock.adjust(41)
        clock_at_stop = first.clock.value
    saved = json.loads(path.read_text())
    assert [task_id for task_id, _ in saved["revoked"]] == ["doomed-id"]
    assert saved["clock"] >= clock_at_stop

    second, remember = _app_with_task(ran)  # a new process, as far as state goes
    with second, second.worker(statedb=path) as worker:
        assert "doomed-id" in worker.state.revoked
        assert second.clock.value > saved["clock"]
        doomed = remember.apply_async((1,), task_id="doomed-id")
        fine = remember.apply_async((2,))
        assert fine.get(timeout=10) == 2
        with pytest.raises(TaskRevokedError):
            doomed.get(timeout=10)
        assert doomed.state == states.REVOKED
    assert ran == [2]


def test_saved_periodically_while_running_only_when_changed(app, tmp_path):
    path = tmp_path / "worker.state"
    app.steps["worker"].add(StateDB, interval=3600)
    with app.worker(statedb=str(path), **QUIET) as worker:
        step = worker.steps["statedb"]
        assert step.sync() is False  # saved once at start; nothing new since
        worker.revoke(["a", "b"])
        assert step.sync() is True
        assert [i for i, _ in json.loads(path.read_text())["revoked"]] == ["a", "b"]
        assert step.sync() is False
        assert worker.statistics()["statedb"] == {"path": str(path), "saves": 2}


def test_saved_on_the_timer(app, tmp_path):
    path = tmp_path / "worker.state"
    app.steps["worker"].add(StateDB, interval=0.02)
    with app.worker(statedb=path) as worker:
        worker.revoke("on-the-timer")
        wait_for(lambda: "on-the-timer" in path.read_text(), message="the revoke written by a tick")


def test_ids_that_expired_while_the_worker_was_down_stay_forgotten(app, tmp_path):
    path = tmp_path / "worker.state"
    long_ago = time.time() - 4 * 3600  # past the revoked set's three hours
    path.write_text(
        json.dumps(
            {
                "format": "nbqueue-statedb",
                "version": 1,
                "clock": 7,
                "revoked": [["old", long_ago], ["recent", time.time()]],
            }
        )
    )
    with app.worker(statedb=path, **QUIET) as worker:
        assert "old" not in worker.state.revoked
        assert "recent" in worker.state.revoked
        assert app.clock.value == 8


def test_an_unreadable_file_is_kept_aside_and_the_worker_starts(app, tmp_path, caplog):
    path = tmp_path / "worker.state"
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR), app.worker(statedb=path) as worker:
        assert len(worker.state.revoked) == 0
    (aside,) = tmp_path.glob("worker.state.corrupt-*")
    assert aside.read_text() == "{not json"
    assert "unreadable" in caplog.text and str(aside) in caplog.text
    assert json.loads(path.read_text())["format"] == "nbqueue-statedb"


def test_an_unwritable_path_fails_the_start_naming_the_step(app, tmp_path):
    worker = app.worker(statedb=tmp_path / "missing-dir" / "worker.state")
    with pytest.raises(BootstepError, match="'statedb' failed to start: FileNotFoundError"):
        worker.start()
    assert worker.status == "stopped"
