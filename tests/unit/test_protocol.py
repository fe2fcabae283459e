"""Protocol v2 messages against the real Celery 5.7 (and 5.5) captures."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nbqueue import protocol
from nbqueue.exceptions import ProtocolError
from tests.captures import envelope_body, load

MESSAGES = load("redis_task_messages.json")
# headers that depend on where and when the capture was made
VOLATILE_HEADERS = {"origin"}


def _envelopes(name: str) -> list[dict]:
    return [entry["envelope"] for entry in MESSAGES[name] if "envelope" in entry]


def _capture(name: str) -> dict:
    return _envelopes(name)[0]


def test_simple_delay_matches_celery_byte_for_byte_in_headers_properties_and_body():
    env = _capture("simple_delay")
    headers = env["headers"]
    msg = protocol.build_task_message(
        headers["task"], headers["id"], (2, 3), {}, reply_to=env["properties"]["reply_to"]
    )
    expected = {k: v for k, v in headers.items() if k not in VOLATILE_HEADERS}
    assert {k: v for k, v in msg.headers.items() if k not in VOLATILE_HEADERS} == expected
    assert list(msg.headers) == list(headers)  # same keys, same order as Celery sends them
    props = {
        k: v
        for k, v in env["properties"].items()
        if k not in ("delivery_info", "body_encoding", "delivery_tag")
    }
    assert msg.properties == props
    assert [list(msg.args), msg.kwargs, msg.embed] == envelope_body(env)


def test_options_countdown_expires_priority_time_limits_and_custom_headers():
    env = _capture("options_countdown_expires_priority_limits_headers")
    headers = env["headers"]
    eta = datetime.fromisoformat(headers["eta"])
    expires = datetime.fromisoformat(headers["expires"])
    msg = protocol.build_task_message(
        headers["task"],
        headers["id"],
        (1, 2),
        {},
        eta=eta,
        expires=expires,
        shadow="shadowname",
        time_limit=30,
        soft_time_limit=20,
        priority=5,
        headers={"x-custom": "hdr"},
        reply_to=env["properties"]["reply_to"],
    )
    assert msg.headers["eta"] == headers["eta"]
    assert msg.headers["expires"] == headers["expires"]
    assert msg.headers["timelimit"] == [30, 20]  # hard first, then soft
    assert msg.headers["shadow"] == "shadowname"
    assert msg.headers["x-custom"] == "hdr"
    assert msg.properties["priority"] == 5


def test_expires_in_seconds_sets_header_and_expiration_property():
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    msg = protocol.build_task_message("t", "id", [], {}, expires=60, countdown=5, now=now)
    assert msg.headers["expires"] == "2030-01-02T03:05:05+00:00"
    assert msg.headers["eta"] == "2030-01-02T03:04:10+00:00"
    assert msg.properties["expiration"] == "60000"


@pytest.mark.parametrize(
    "name",
    [
        "simple_delay",
        "send_task",
        "link_linkerror",
        "chain3",
        "group2",
        "chord2",
        "json_types",
        "queue_other",
        "priority0",
        "priority9",
        "eta_aware",
    ],
)
def test_every_captured_v2_message_parses(name):
    for env in _envelopes(name):
        body = envelope_body(env)
        msg = protocol.parse_task_message(env["headers"], env["properties"], body)
        assert msg.id == env["headers"]["id"]
        assert msg.name == env["headers"]["task"]
        assert [list(msg.args), msg.kwargs, msg.embed] == list(body)


def test_chain_embed_holds_the_remaining_steps_reversed():
    env = _capture("chain3")
    msg = protocol.parse_task_message(env["headers"], env["properties"], envelope_body(env))
    assert [s["args"] for s in msg.embed["chain"]] == [[4], [3]]


def test_protocol_v1_body_is_converted_to_v2():
    env = _capture("protocol1")
    msg = protocol.parse_task_message(env["headers"], env["properties"], envelope_body(env))
    assert msg.name == "wiretasks.add"
    assert list(msg.args) == [5, 6]
    assert msg.headers["root_id"] == msg.id
    assert msg.timelimit == (None, None)


def test_celery55_message_has_the_same_shape():
    capture = load("celery55_messages.json")
    env = capture["msgs"][0]
    msg = protocol.parse_task_message(env["headers"], env["properties"], env["body_decoded"])
    assert msg.name == "v55.add"
    assert list(msg.args) == [1, 2]


def test_minimal_message_with_only_id_and_task_is_accepted():
    env = load("minimal_messages_to_celery_worker.json")["minimal_id_task_only"]["sent"]
    msg = protocol.parse_task_message(env["headers"], env["properties"], envelope_body(env))
    assert msg.headers["root_id"] == msg.id
    assert msg.embed == {}


@pytest.mark.parametrize(
    ("headers", "body", "match"),
    [
        ({"id": "x"}, [[], {}, {}], "no 'task' header"),
        ({"task": "t"}, [[], {}, {}], "header 'id'"),
        ({"task": "t", "id": 5}, [[], {}, {}], "header 'id'"),
        ({"task": "t", "id": "x"}, "garbage", "body must be"),
        ({"task": "t", "id": "x"}, [{"a": 1}, {}, {}], "args must be a list"),
        ({"task": "t", "id": "x"}, [[], [], {}], "kwargs must be an object"),
        ({"task": "t", "id": "x"}, [[], {}, 3], "embed must be an object"),
    ],
)
def test_malformed_messages_raise_protocol_errors_naming_the_problem(headers, body, match):
    with pytest.raises(ProtocolError, match=match):
        protocol.parse_task_message(headers, {}, body)


def test_saferepr_is_bounded_and_never_raises():
    class Evil:
        def __repr__(self):
            raise RuntimeError("no")

    assert protocol.saferepr((1, 2)) == "(1, 2)"
    assert len(protocol.saferepr(list(range(100_000)))) <= 1024
    assert "Evil" in protocol.saferepr(Evil())


def test_new_id_is_a_version_4_uuid_and_unique():
    import uuid

    ids = {protocol.new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    parsed = uuid.UUID(next(iter(ids)))
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_naive_eta_is_read_as_local_time():
    naive = datetime(2030, 1, 1, 12, 0)
    assert protocol.parse_time(naive.isoformat()) == naive.astimezone()
    assert protocol.parse_time("2030-01-01T12:00:00Z").tzinfo is not None
