"""A closed event log keeps showing every event it received, including the ones that came
after its last throttled redraw (a notebook's last cell closes it right after the work)."""

from __future__ import annotations

import time

from nbqueue.jupyter.monitor import EventLogView


def test_closing_the_log_draws_the_events_still_waiting_for_a_redraw(app) -> None:
    handlers = []

    def feed(handler):
        handlers.append(handler)
        return lambda: handlers.remove(handler)

    view = EventLogView(app, feed=feed)
    (emit,) = handlers
    now = time.time()
    emit({"type": "task-received", "hostname": "w@h", "timestamp": now, "uuid": "first"})
    emit({"type": "task-succeeded", "hostname": "w@h", "timestamp": now, "uuid": "second"})
    view.close()  # the second event arrived inside the throttle's quiet interval
    assert "uuid=first" in view.log.value and "uuid=second" in view.log.value
    assert not handlers  # unsubscribed
