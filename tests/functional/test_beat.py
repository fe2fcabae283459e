"""Beat step: an embedded scheduler sends ``beat_schedule`` entries to the worker's queues."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from nbqueue.beat import crontab
from nbqueue.exceptions import BootstepError
from nbqueue.worker.steps.beat import Beat
from tests.helpers import wait_for


def test_disabled_unless_asked_for(app):
    worker = app.worker()
    assert worker.blueprint.worker.state_of("beat") == "disabled"


def test_fires_on_time_under_an_injectable_clock(app):
    now = [datetime(2030, 1, 1, 6, 59, 0, tzinfo=timezone.utc)]
    app.steps["worker"].add(Beat, clock=lambda: now[0], max_interval=3600)
    app.conf.beat_schedule = {
        "morning": {"task": "report", "schedule": crontab(minute=0, hour=7), "args": ("am",)},
    }
    ran = []
    done = threading.Event()

    @app.task(name="report", bind=True)
    def report(self, when):
        ran.append((when, self.request.headers.get("celery_beat_task")))
        done.set()

    with app.worker(beat=True) as worker:
        beat = worker.steps["beat"]
        assert beat.scheduler.tick() == 60.0
        now[0] += timedelta(seconds=59)
        beat.scheduler.tick()
        assert worker.drain(10)
        assert ran == []
        now[0] += timedelta(seconds=1)
        beat.scheduler.tick()
        assert done.wait(10)
        assert ran == [("am", True)]
        info = worker.statistics()["beat"]
        assert info["sent"] == 1
        assert info["entries"]["morning"]["next_run_at"] == "2030-01-02T07:00:00+00:00"


def test_sends_interval_entries_from_its_own_thread(app):
    app.conf.beat_schedule = {"often": {"task": "tick", "schedule": 0.05, "kwargs": {"n": 1}}}
    count = []

    @app.task(name="tick")
    def tick(n):
        count.append(n)

    with app.worker(beat=True, concurrency=1) as worker:
        wait_for(lambda: len(count) >= 3, message="three periodic runs")
        assert worker.blueprint.worker.state_of("beat") == "running"
        names = [t.name for t in threading.enumerate()]
        assert f"nbqueue-{worker.hostname}-beat" in names
    assert f"nbqueue-{worker.hostname}-beat" not in [t.name for t in threading.enumerate()]


def test_a_bad_schedule_fails_the_start_naming_the_step_and_entry(app):
    app.conf.beat_schedule = {"broken": {"task": "t", "schedule": "hourly"}}
    worker = app.worker(beat=True)
    with pytest.raises(BootstepError, match=r"'beat' failed to start: .*beat_schedule\['broken'\]"):
        worker.start()
    assert worker.status == "stopped"
