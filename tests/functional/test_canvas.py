"""Workflows run end to end: chains, groups, chords, nested, map/starmap/chunks, links."""

from __future__ import annotations

import pytest

import nbqueue
from nbqueue import chain, chord, group, states
from nbqueue.exceptions import ChordError, TimeoutError


@pytest.fixture
def tasks(app):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.tsum")
    def tsum(values):
        return sum(values)

    @app.task(name="t.square")
    def square(x):
        return x * x

    @app.task(name="t.fail")
    def fail(*args):
        raise ValueError("header failed")

    return add, tsum, square, fail


def test_chain_passes_results_along_and_records_parents_like_celery(app, tasks):
    add, *_ = tasks
    with app.worker(concurrency=2) as worker:
        result = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
        assert result.get(timeout=10) == 10
        assert worker.drain(10)
    middle, first = result.parent, result.parent.parent
    first_meta = app.backend.get_meta(first.id)
    assert first_meta["children"] == [[[middle.id, None], None]]
    assert app.backend.get_meta(result.id)["parent_id"] == middle.id
    assert app.backend.get_meta(middle.id)["parent_id"] == first.id


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda add, tsum, square: group(add.s(1, 1), add.s(2, 2)) | tsum.s(), 6),
        (lambda add, tsum, square: chain(add.s(1, 1), group(add.s(10), add.s(20)), tsum.s()), 34),
        (
            lambda add, tsum, square: chain(
                add.s(1, 1), chord([add.s(10), add.s(20)], tsum.s()), add.s(100)
            ),
            134,
        ),
        (lambda add, tsum, square: chord([add.s(1, 1), chain(add.s(2, 2), add.s(3))], tsum.s()), 9),
        (lambda add, tsum, square: chain(add.s(1, 1), add.si(5, 5), square.s()), 100),
        (
            lambda add, tsum, square: chord(
                [chord([add.s(1, 1), add.s(2, 2)], tsum.s()), add.s(10, 10)], tsum.s()
            ),
            26,
        ),
        (lambda add, tsum, square: chord([], tsum.s()), 0),
        (
            lambda add, tsum, square: group(add.s(1, 1), add.s(2, 2)) | group(tsum.s(), tsum.s()),
            [6, 6],
        ),
    ],
)
def test_nested_workflows_give_celerys_results(app, tasks, build, expected):
    add, tsum, square, _ = tasks
    with app.worker(concurrency=3):
        assert build(add, tsum, square).apply_async().get(timeout=10) == expected


def test_groups_flatten_nested_groups_and_take_chains_as_members(app, tasks):
    add, *_ = tasks
    with app.worker(concurrency=3):
        nested = group(group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)).apply_async()
        assert nested.get(timeout=10) == [2, 4, 6]
        with_chain = group(chain(add.s(1, 1), add.s(2)), add.s(5, 5)).apply_async()
        assert with_chain.get(timeout=10) == [4, 10]
        assert with_chain.completed_count() == 2


def test_chord_body_gets_header_results_in_order_and_celerys_meta(app, tasks):
    add, tsum, *_ = tasks
    with app.worker(concurrency=4) as worker:
        result = chord([add.s(i, i) for i in range(10)], tsum.s()).apply_async()
        assert result.get(timeout=10) == sum(2 * i for i in range(10))
        assert worker.drain(10)
    header = result.parent
    meta = app.backend.get_meta(result.id)
    assert meta["group_id"] == header.id
    assert meta["parent_id"] in {r.id for r in header}
    assert app.backend.get_meta(header[0].id)["group_id"] == header.id


def test_a_failing_header_task_fails_the_body_and_calls_its_errback(app, tasks):
    add, tsum, _, fail = tasks
    errors = []

    @app.task(name="t.on_error")
    def on_error(request, exc, traceback):
        errors.append((request.id, type(exc)))

    with app.worker(concurrency=2) as worker:
        body = tsum.s()
        body.link_error(on_error.s())
        result = chord([add.s(1, 1), fail.s()], body).apply_async()
        with pytest.raises(ChordError, match="header failed"):
            result.get(timeout=10)
        assert worker.drain(10)
        group_result = result.parent
        assert group_result.completed_count() == 1
        values = group_result.join(timeout=10, propagate=False)
    assert values[0] == 2 and isinstance(values[1], ValueError)
    assert errors == [(result.id, ChordError)]


def test_map_starmap_and_chunks(app, tasks):
    add, _, square, _ = tasks
    with app.worker(concurrency=2):
        assert square.map([1, 2, 3]).apply_async().get(timeout=10) == [1, 4, 9]
        assert add.starmap([(1, 2), (3, 4)]).apply_async().get(timeout=10) == [3, 7]
        chunked = add.chunks([(i, i) for i in range(10)], 3).apply_async()
        assert chunked.get(timeout=10) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
        sent_by_name = app.send_task("celery.chunks", (add.s(), [[1, 1], [2, 2]], 1))
        inner = sent_by_name.get(timeout=10)
        assert isinstance(inner, list) and len(inner) == 2  # the GroupResult's tuple form


def test_several_links_run_as_a_group_and_are_the_tasks_children(app, tasks):
    add, _, square, _ = tasks
    with app.worker(concurrency=2) as worker:
        result = add.apply_async((2, 2), link=[square.s(), add.s(1)])
        assert result.get(timeout=10) == 4
        assert worker.drain(10)
    (child,) = result.children
    assert isinstance(child, nbqueue.GroupResult)
    assert child.get(timeout=1) == [16, 5]


def test_group_result_save_and_restore_use_celerys_tuple(app, tasks):
    add, *_ = tasks
    with app.worker(concurrency=2):
        saved = group(add.s(1, 1), add.s(2, 2)).apply_async().save()
        restored = nbqueue.GroupResult.restore(saved.id, app=app)
        assert restored.get(timeout=10) == [2, 4]
    assert restored.as_tuple() == [
        [saved.id, None],
        [[[r.id, None], None] for r in saved.results],
    ]
    assert all(r.state == states.SUCCESS for r in restored)


def test_a_chain_result_raises_the_error_of_a_failed_earlier_step(app, tasks):
    add, _, _, fail = tasks
    with app.worker(concurrency=2) as worker:
        result = chain(add.s(1, 1), fail.s(), add.s(10)).apply_async()
        with pytest.raises(ValueError, match="header failed"):
            result.get(timeout=10)  # Celery's follow_parents: not a wait for the last step
        assert worker.drain(10)
    assert result.state == states.PENDING  # the step after the failure never ran
    assert result.parent.state == states.FAILURE
    with pytest.raises(TimeoutError):
        result.get(timeout=0.2, follow_parents=False)


def test_a_chains_errback_runs_for_the_failing_step_and_its_callback_after_the_last(app, tasks):
    add, _, square, fail = tasks
    errors, done = [], []

    @app.task(name="t.on_error")
    def on_error(request, exc, traceback):
        errors.append((request.task, str(exc)))

    @app.task(name="t.done")
    def finished(value):
        done.append(value)

    errback = on_error.s()
    failing = fail.s()
    failing.link_error(errback)
    broken = chain(add.s(1, 1), failing, add.s(10))
    broken.link_error(errback)
    working = chain(add.s(1, 1), square.s())
    working.link(finished.s())
    with app.worker(concurrency=2) as worker:
        with pytest.raises(ValueError):
            broken.apply_async().get(timeout=10)
        assert working.apply_async().get(timeout=10) == 4
        assert worker.drain(10)
    # the failing step's own errback and the chain's: each once; none for the steps that passed
    assert errors == [("t.fail", "header failed")] * 2
    assert done == [4]  # the chain's callback got the last step's result, not the first's
    assert failing.options["link_error"] == [errback]  # the user's signature is left alone


def test_a_groups_errback_is_every_members(app, tasks):
    add, _, _, fail = tasks
    errors = []

    @app.task(name="t.on_error")
    def on_error(request, exc, traceback):
        errors.append(request.args)

    batch = group(add.s(1, 1), fail.s(1), fail.s(2))
    batch.link_error(on_error.s())
    with app.worker(concurrency=2) as worker:
        values = batch.apply_async().join(timeout=10, propagate=False)
        assert worker.drain(10)
    assert values[0] == 2 and all(isinstance(v, ValueError) for v in values[1:])
    assert sorted(errors) == [[1], [2]]
