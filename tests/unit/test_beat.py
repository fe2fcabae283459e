"""Beat schedules and the scheduler, under a fake clock: entries fire on time, no threads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from nbqueue.beat import Scheduler, crontab, schedule
from nbqueue.config import Settings
from nbqueue.exceptions import ConfigurationError

T0 = datetime(2030, 1, 1, 0, 0, 0, tzinfo=timezone.utc)  # a Tuesday


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeApp:
    """What the scheduler needs of an app: settings (its sends are recorded by the test)."""

    def __init__(self, **settings) -> None:
        self.conf = Settings(settings)

    def send_task(self, *args, **kwargs):  # pragma: no cover - tests pass their own sender
        raise AssertionError("tests record sends with send=")


class Recorder(list):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, task, args, kwargs, **options) -> None:
        self.append((self.clock.now, task, args, kwargs, options))


def _scheduler(entries, clock, **settings):
    sent = Recorder(clock)
    app = FakeApp(beat_schedule=entries, **settings)
    return Scheduler(app, clock=clock, send=sent, max_interval=86400), sent


def test_interval_entries_fire_every_period_from_the_start():
    clock = FakeClock()
    entries = {
        "every-10s": {"task": "tidy", "schedule": 10.0, "args": (1,), "kwargs": {"k": 2}},
        "every-minute": {"task": "report", "schedule": timedelta(minutes=1)},
    }
    beat, sent = _scheduler(entries, clock)
    assert beat.tick() == 10.0  # nothing due at the start; the first in ten seconds
    assert sent == []
    clock.advance(seconds=9.5)
    assert beat.tick() == pytest.approx(0.5)
    assert sent == []
    clock.advance(seconds=0.5)
    assert beat.tick() == 10.0
    assert [(s[0], s[1], s[2], s[3]) for s in sent] == [
        (T0 + timedelta(seconds=10), "tidy", (1,), {"k": 2})
    ]
    for _ in range(5):
        clock.advance(seconds=10)
        beat.tick()
    assert [s[1] for s in sent].count("tidy") == 6
    assert [s[0] for s in sent if s[1] == "report"] == [T0 + timedelta(minutes=1)]
    assert beat.entries["every-10s"].total_run_count == 6


def test_a_tick_late_by_several_periods_sends_once_not_a_burst():
    clock = FakeClock()
    beat, sent = _scheduler({"e": {"task": "t", "schedule": 5}}, clock)
    clock.advance(seconds=60)
    assert beat.tick() == 5.0
    assert len(sent) == 1


def test_crontab_entries_fire_at_their_matches():
    clock = FakeClock(T0 + timedelta(seconds=30))
    entries = {
        "every-5-min": {"task": "five", "schedule": crontab(minute="*/5")},
        "weekday-7am": {
            "task": "seven",
            "schedule": crontab(minute=0, hour=7, day_of_week="mon-fri"),
        },
    }
    beat, sent = _scheduler(entries, clock)
    assert beat.tick() == pytest.approx(4 * 60 + 30)
    clock.now = T0 + timedelta(minutes=5)
    assert beat.tick() == pytest.approx(300)
    assert [(s[0], s[1]) for s in sent] == [(T0 + timedelta(minutes=5), "five")]
    clock.now = T0 + timedelta(hours=7)
    beat.tick()
    assert [s[1] for s in sent] == ["five", "five", "seven"]
    for day in range(1, 7):  # Wednesday to Monday, each at 07:00
        clock.now = T0 + timedelta(days=day, hours=7)
        beat.tick()
    weekdays = [s[0].strftime("%a") for s in sent if s[1] == "seven"]
    assert weekdays == ["Tue", "Wed", "Thu", "Fri", "Mon"]


def test_crontab_reads_its_fields_in_the_app_timezone():
    clock = FakeClock(T0)
    entries = {"nine-in-paris": {"task": "t", "schedule": crontab(minute=0, hour=9)}}
    beat, sent = _scheduler(entries, clock, timezone="Europe/Paris")
    assert beat.tick() == pytest.approx(8 * 3600)  # 09:00 CET is 08:00 UTC in winter
    clock.now = T0 + timedelta(hours=8)
    beat.tick()
    assert len(sent) == 1
    assert beat.info()["nine-in-paris"]["next_run_at"] == "2030-01-02T09:00:00+01:00"


def test_sends_options_and_marks_beat_messages_like_celery():
    clock = FakeClock()
    entries = {
        "e": {
            "task": "t",
            "schedule": 1,
            "options": {"queue": "periodic", "expires": 30, "headers": {"x-mine": 1}},
        }
    }
    beat, sent = _scheduler(entries, clock)
    clock.advance(seconds=1)
    beat.tick()
    ((_, _, _, _, options),) = sent
    assert options == {
        "queue": "periodic",
        "expires": 30,
        "headers": {"x-mine": 1, "celery_beat_task": True},
    }


def test_a_failing_send_is_logged_and_the_entry_waits_for_its_next_turn(caplog):
    clock = FakeClock()

    def refuse(*args, **kwargs):
        raise OSError("broker away")

    app = FakeApp(
        beat_schedule={"e": {"task": "t", "schedule": 1}, "f": {"task": "u", "schedule": 1}}
    )
    beat = Scheduler(app, clock=clock, send=refuse)
    clock.advance(seconds=1)
    assert beat.tick() == 1.0
    assert beat.sent == 0
    assert "could not send 'e'" in caplog.text and "could not send 'f'" in caplog.text
    assert beat.entries["e"].total_run_count == 1


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ({"x": {"schedule": 1}}, "needs a 'task'"),
        ({"x": {"task": "t"}}, "needs a 'task' name and a 'schedule'"),
        ({"x": {"task": "t", "schedule": "hourly"}}, "unsupported schedule 'hourly'"),
        ({"x": {"task": "t", "schedule": 0}}, "positive interval"),
        ({"x": {"task": "t", "schedule": 1, "relative": True}}, r"unknown key\(s\) \['relative'\]"),
        ({"x": ["t", 1]}, "must be a dict"),
    ],
)
def test_bad_entries_are_refused_with_their_name(entries, error):
    with pytest.raises(ConfigurationError, match=r"beat_schedule\['x'\]") as info:
        _scheduler(entries, FakeClock())
    assert info.match(error)


def test_invalid_crontab_fields_are_refused():
    with pytest.raises(ConfigurationError, match="invalid crontab"):
        crontab(minute=61)
    with pytest.raises(ConfigurationError, match="invalid crontab"):
        crontab(day_of_week="someday")


def test_schedules_compare_and_render():
    assert schedule(10) == schedule(timedelta(seconds=10))
    assert crontab(minute=[0, 30]) == crontab(minute="0,30")
    assert repr(crontab(minute=0, hour=7)) == "<crontab: 0 7 * * * (m h dM MY dW)>"
    assert repr(schedule(2.5)) == "<freq: 2.5s>"


CRONTABS = [
    {},
    {"minute": "*/15"},
    {"minute": 0, "hour": "*/3"},
    {"minute": 30, "hour": 7, "day_of_week": "mon-fri"},
    {"minute": 0, "hour": 0, "day_of_week": "sun"},
    {"minute": 0, "hour": 0, "day_of_month": "1-7", "day_of_week": "mon"},
    {"minute": 15, "hour": 12, "day_of_month": 29, "month_of_year": 2},
    {"minute": [0, 20, 40], "hour": "8-17"},
    {"minute": 0, "hour": 6, "day_of_month": "2-30/2"},
]


@pytest.mark.parametrize("fields", CRONTABS, ids=lambda f: repr(f) if f else "every-minute")
def test_crontab_next_run_matches_celery(fields):
    from celery.schedules import crontab as celery_crontab

    for start in (T0, datetime(2031, 7, 15, 13, 47, 12, tzinfo=timezone.utc)):
        ours = crontab(**fields).next_run(start)
        theirs = start + celery_crontab(**fields, nowfun=lambda s=start: s).remaining_estimate(
            start
        )
        assert ours == theirs, f"{fields} after {start}"
