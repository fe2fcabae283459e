"""Canvas signatures and the messages they send, compared with real Celery 5.7 captures."""

from __future__ import annotations

import json

import pytest

import nbqueue
from nbqueue import chain, chord, group
from nbqueue.canvas import signature, xmap, xstarmap
from tests.captures import load

SHAPES = load("canvas_shapes.json")
_HEADERS = ("task", "id", "group", "group_index", "root_id", "parent_id")


@pytest.fixture
def wire(app):
    """The capture's tasks, and every message the app publishes (no worker runs)."""

    @app.task(name="wiretasks.add")
    def add(x, y):
        return x + y

    @app.task(name="wiretasks.tsum")
    def tsum(values):
        return sum(values)

    sent = []
    app.signals.before_task_publish.connect(
        lambda sender, headers, body, **kw: sent.append(
            {"headers": dict(headers), "body": json.loads(json.dumps(body))}
        )
    )
    return add, tsum, sent


def normalized(message, ids):
    """Ids replaced by their order of appearance; per-process fields dropped."""

    def walk(obj):
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items() if k not in ("reply_to", "origin")}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, str) and len(obj) == 36 and obj.count("-") == 4:
            return ids.setdefault(obj, f"<id{len(ids)}>")
        return obj

    return walk({"headers": {k: message["headers"][k] for k in _HEADERS}, "body": message["body"]})


def same_as_celery(sent, capture):
    ids_ours, ids_theirs = {}, {}
    ours = [normalized(m, ids_ours) for m in sent]
    theirs = [normalized(m, ids_theirs) for m in capture]
    assert ours == theirs


def test_signature_dicts_are_celerys(wire):
    add, tsum, _ = wire
    shapes = {
        "sig_simple": add.s(1, 2).set(countdown=5, queue="q1", priority=3),
        "sig_immutable": add.si(1, 2),
        "sig_group": group(add.s(1, 1), add.s(2, 2)),
        "sig_chain": chain(add.s(1, 1), add.s(2)),
        "sig_chord": chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
    }
    for name, sig in shapes.items():
        assert json.loads(json.dumps(sig)) == SHAPES[name], name


def test_signatures_round_trip_through_their_dict_form(wire, app):
    add, _, _ = wire
    for name in ("sig_simple", "sig_immutable", "sig_group", "sig_chain", "sig_chord"):
        sig = signature(SHAPES[name], app=app)
        assert json.loads(json.dumps(sig)) == SHAPES[name], name
    assert type(signature(SHAPES["sig_chord"], app=app)) is chord
    assert type(signature(SHAPES["sig_chain"], app=app)) is chain
    mapped = json.loads(json.dumps(add.map([(1, 2)])))
    assert mapped["task"] == "celery.map" and mapped["subtask_type"] == "xmap"
    assert type(signature(mapped, app=app)) is xmap
    assert type(signature(json.loads(json.dumps(add.starmap([(1, 2)]))), app=app)) is xstarmap


@pytest.mark.parametrize(
    ("capture", "build"),
    [
        (
            "send_chain_group_then_task",
            lambda add, tsum: chain(add.s(1, 1), group(add.s(10), add.s(20)), tsum.s()),
        ),
        (
            "send_chain_with_chord_middle",
            lambda add, tsum: chain(
                add.s(1, 1), chord([add.s(10), add.s(20)], tsum.s()), add.s(100)
            ),
        ),
        (
            "send_chord_with_chain_in_header",
            lambda add, tsum: chord([add.s(1, 1), chain(add.s(2, 2), add.s(3))], tsum.s()),
        ),
        (
            "send_group_with_chain",
            lambda add, tsum: group(chain(add.s(1, 1), add.s(2)), add.s(5, 5)),
        ),
    ],
)
def test_workflows_send_the_messages_celery_sends(wire, capture, build):
    add, tsum, sent = wire
    build(add, tsum).apply_async()
    same_as_celery(sent, SHAPES[capture])


def test_chain_results_link_back_to_their_parents(wire):
    add, tsum, _ = wire
    result = chain(add.s(1, 1), chord([add.s(10), add.s(20)], tsum.s()), add.s(100)).apply_async()
    body = result.parent
    header = body.parent
    first = header.parent
    assert isinstance(header, nbqueue.GroupResult) and len(header) == 2
    assert first.parent is None
    assert result.as_tuple()[0][0] == result.id
