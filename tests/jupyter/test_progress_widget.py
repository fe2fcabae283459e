"""The result-progress widget, checked through its traits; and its flood protection."""

from __future__ import annotations

import threading

import pytest

import nbqueue
from nbqueue.jupyter.progress import ProgressView
from tests.helpers import wait_for


@pytest.fixture
def app():
    application = nbqueue.App("progress")

    @application.task(name="inc")
    def inc(x):
        return x + 1

    @application.task(name="boom")
    def boom(x):
        raise ValueError(x)

    try:
        yield application
    finally:
        application.close()


def _finished(view: ProgressView):
    return lambda: view.finished


def test_a_group_bar_ends_at_its_size_with_counts(app) -> None:
    inc = app.tasks["inc"]
    with app.worker(concurrency=4):
        result = nbqueue.group(inc.s(i) for i in range(500)).apply_async()
        view = ProgressView(result)
        wait_for(_finished(view), timeout=60, message="the bar to finish")
    assert (view.bar.value, view.bar.max) == (500.0, 500.0)
    assert view.bar.bar_style == "success"
    assert view.label.value.startswith("500/500 · 500 ok · 0 failed")


def test_failures_are_counted_and_colour_the_bar(app) -> None:
    inc = app.tasks["inc"]
    boom = app.tasks["boom"]
    with app.worker(concurrency=2):
        result = nbqueue.group([inc.s(1), boom.s(2), inc.s(3)]).apply_async()
        view = ProgressView(result)
        wait_for(_finished(view), timeout=30)
    assert view.bar.value == 3.0
    assert view.bar.bar_style == "danger"
    assert "2 ok · 1 failed" in view.label.value


def test_one_task_shows_its_progress_meta(app) -> None:
    step = threading.Semaphore(0)
    seen = threading.Event()

    @app.task(bind=True)
    def crunch(self):
        for i in range(1, 4):
            self.progress(i, 3)
            seen.set()
            step.acquire(timeout=30)
        return "done"

    with app.worker(concurrency=1):
        result = crunch.delay()
        view = ProgressView(result)
        assert seen.wait(30)
        wait_for(lambda: view.bar.max == 3.0 and view.bar.value >= 1.0, message="1/3 shown")
        assert "PROGRESS" in view.label.value
        for _ in range(3):
            step.release()
        wait_for(_finished(view), timeout=30)
    assert view.label.value.startswith("1/1 · 1 ok")
    assert view.bar.value == view.bar.max == 1.0


def test_a_chord_counts_its_header_then_its_body(app) -> None:
    gate = threading.Event()

    @app.task
    def part(x):
        return x

    @app.task
    def total(values):
        gate.wait(30)
        return sum(values)

    with app.worker(concurrency=4):
        result = nbqueue.chord(part.s(i) for i in range(5))(total.s())
        view = ProgressView(result)
        wait_for(lambda: view.bar.value == 5.0, timeout=30, message="the header done")
        assert view.bar.max == 6.0
        assert "chord body" in view.label.value
        assert not view.finished
        gate.set()
        wait_for(_finished(view), timeout=30)
    assert view.bar.value == 6.0
    assert result.get(timeout=10) == 10


def test_fallbacks_for_front_ends_without_widgets(app) -> None:
    inc = app.tasks["inc"]
    result = nbqueue.group(inc.s(i) for i in range(3)).apply_async()
    view = ProgressView(result)  # no worker: nothing done yet
    try:
        assert view.wait(0.05) is False
        bundle = view._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/plain"].startswith("<ProgressView 0/3")
        assert '<progress value="0" max="3">' in bundle["text/html"]
    finally:
        view.close()


@pytest.mark.slow
def test_a_10000_task_batch_never_floods_the_front_end(app, widget_messages) -> None:
    inc = app.tasks["inc"]
    with app.worker(concurrency=4):
        result = nbqueue.group(inc.s(i) for i in range(10_000)).apply_async()
        view = ProgressView(result)
        wait_for(_finished(view), timeout=90, message="10,000 tasks")
    assert view.bar.value == view.bar.max == 10_000.0
    ids = [view.bar.model_id, view.label.model_id]
    peaks = {i: widget_messages.peak_rate(i) for i in ids}
    assert all(len(widget_messages.times[i]) > 1 for i in ids), "the widgets were updated"
    assert max(peaks.values()) < 100, peaks
    total = sorted(t for i in ids for t in widget_messages.times[i])
    assert _peak(total) < 100, "all of the view's messages together"


def _peak(stamps: list[float]) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
