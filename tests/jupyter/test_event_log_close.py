"""A closed event log keeps showing every event it received, including the ones that came
after its last throttled redraw (a notebook's last cell closes it right after the work)."""

from __future__ import annotations

import time

from nbqueue.jupyter.monitor import EventLogView


def _feed(handlers):
    """A feed whose subscribers land in `handlers` (the test emits through them)."""

    def subscribe(handler):
        handlers.append(handler)
        return lambda: handlers.remove(handler)

    return subscribe


def test_closing_the_log_draws_the_events_still_waiting_for_a_redraw(app) -> None:
    handlers = []
    view = EventLogView(app, feed=_feed(handlers))
    (emit,) = handlers
    now = time.time()
    emit({"type": "task-received", "hostname": "w@h", "timestamp": now, "uuid": "first"})
    emit({"type": "task-succeeded", "hostname": "w@h", "timestamp": now, "uuid": "second"})
    view.close()  # the second event arrived inside the throttle's quiet interval
    assert "uuid=first" in view.log.value and "uuid=second" in view.log.value
    assert not handlers  # unsubscribed


def test_an_event_both_feeds_report_is_shown_once(app) -> None:
    handlers = []
    view = EventLogView(app, feed=_feed(handlers))
    (emit,) = handlers
    now = time.time()
    offline = {"type": "worker-offline", "hostname": "w@h", "timestamp": now}
    beat = {"type": "worker-heartbeat", "hostname": "w@h", "timestamp": now}
    for event in (offline, dict(offline), beat, dict(beat)):  # signal feed, then broker feed
        emit(event)
    emit({**offline, "hostname": "other@h"})
    view.close()
    assert view.text().count("worker-offline w@h") == 1
    assert view.text().count("worker-heartbeat w@h") == 2  # periodic: never folded
    assert view.text().count("worker-offline other@h") == 1
