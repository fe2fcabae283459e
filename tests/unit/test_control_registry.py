"""The command registry and reply helpers, without a broker."""

from __future__ import annotations

import pytest

from nbqueue.control import (
    CONTROL_COMMANDS,
    INSPECT_COMMANDS,
    NO_REPLY,
    CommandRegistry,
    ControlContext,
    ControlNode,
    flatten_reply,
    jsonable,
    nok,
    ok,
)


def test_builtin_commands_carry_celerys_names_kinds_and_aliases():
    registry = CommandRegistry((*INSPECT_COMMANDS, *CONTROL_COMMANDS))
    kinds = {c.name: c.type for c in registry}
    assert kinds["ping"] == kinds["stats"] == kinds["query_task"] == "inspect"
    assert kinds["revoke"] == kinds["shutdown"] == kinds["election"] == "control"
    for alias, name in [
        ("dump_tasks", "registered"),
        ("dump_revoked", "revoked"),
        ("dump_conf", "conf"),
        ("dump_active", "active"),
        ("dump_reserved", "reserved"),
        ("dump_schedule", "scheduled"),
    ]:
        assert registry[alias] is registry[name]
    assert not registry["hello"].visible and registry["ping"].default_timeout == 0.2
    assert registry["rate_limit"].signature.startswith("<task_name>")
    assert len(registry) == len(INSPECT_COMMANDS) + len(CONTROL_COMMANDS)


def test_registries_are_independent_and_decorators_register():
    first, second = CommandRegistry(), CommandRegistry()

    @first.control_command(args=(("n", int),))
    def bump(ctx, n=1):
        """Bump something by n."""
        return ok(n)

    assert "bump" in first and "bump" not in second
    assert first["bump"].type == "control" and first["bump"].help == "Bump something by n."
    assert first.handlers()["bump"](None, n=3) == {"ok": 3}
    with pytest.raises(KeyError):
        second["bump"]


def test_reply_helpers_and_flattening():
    assert ok("pong") == {"ok": "pong"} and nok("bad") == {"error": "bad"}
    assert flatten_reply([{"a": 1}, {"b": 2}]) == {"a": 1, "b": 2}
    assert repr(NO_REPLY) == "NO_REPLY"


def test_jsonable_makes_any_reply_serializable():
    from datetime import timedelta

    value = {"a": (1, 2), "b": {3}, "c": timedelta(seconds=2), "d": object, 4: None}
    out = jsonable(value)
    assert out["a"] == [1, 2] and out["b"] == [3] and out["c"] == 2.0
    assert out["d"].startswith("<class") and out["4"] is None


class _Mailbox:
    def __init__(self):
        from kombu.clocks import LamportClock

        self.clock = LamportClock()
        self.sent = []
        self.serializer = "json"

    def _publish_reply(self, reply, exchange, routing_key, ticket, **kwargs):
        self.sent.append((reply, routing_key, ticket))


def _node(handlers):
    mailbox = _Mailbox()
    context = ControlContext(worker=None, app=None, hostname="n@test")
    node = ControlNode("n@test", state=context, handlers=handlers, mailbox=mailbox)
    return node, mailbox


REPLY_TO = {"exchange": "reply.celery.pidbox", "routing_key": "oid"}


def test_node_replies_errors_for_failing_and_unknown_commands():
    def fail(ctx):
        raise ValueError("nope")

    node, mailbox = _node({"fail": fail, "quiet": lambda ctx: NO_REPLY})
    node.dispatch("fail", {}, reply_to=REPLY_TO, ticket="t1")
    node.dispatch("missing", {}, reply_to=REPLY_TO, ticket="t2")
    node.dispatch("quiet", {}, reply_to=REPLY_TO, ticket="t3")
    assert mailbox.sent == [
        ({"n@test": {"error": "ValueError('nope')"}}, "oid", "t1"),
        ({"n@test": {"error": "KeyError('missing')"}}, "oid", "t2"),
    ]


def test_node_filters_on_destination_and_pattern():
    node, mailbox = _node({"ping": lambda ctx: ok("pong")})
    for body in (
        {"method": "ping", "destination": ["other@test"]},
        {"method": "ping", "pattern": "x*", "matcher": "glob"},
        {"method": "ping", "destination": ["n@test"]},
        {"method": "ping", "pattern": "n@*", "matcher": "glob"},
        {"method": "ping"},
    ):
        node.handle_message(dict(body, reply_to=REPLY_TO, ticket="t"), None)
    assert len(mailbox.sent) == 3


def test_a_reply_that_cannot_be_sent_becomes_an_error_reply():
    node, mailbox = _node({"odd": lambda ctx: ok(object())})
    calls = []

    def publish(reply, exchange, routing_key, ticket, **kwargs):
        calls.append(reply)
        if len(calls) == 1:
            raise TypeError("not JSON serializable")
        mailbox.sent.append((reply, routing_key, ticket))

    mailbox._publish_reply = publish
    node.dispatch("odd", {}, reply_to=REPLY_TO, ticket="t")
    ((reply, _, _),) = mailbox.sent
    assert reply["n@test"]["error"].startswith("reply could not be sent")


def test_captured_celery_requests_are_filtered_and_answered_like_celery_does():
    """The requests a Celery 5.7 client sent to a hand-made node (foreign_pidbox_responder)."""
    from tests import captures

    golden = captures.load("foreign_pidbox_responder.json")
    stats_shape = golden["inspect_stats_dest"]["nb1@fakehost"]
    handlers = {"ping": lambda ctx: ok("pong"), "stats": lambda ctx: dict(stats_shape)}
    for name in ("nb1@fakehost", "someone@else"):
        node, mailbox = _node(handlers)
        node.hostname = name
        for request in golden["raw_requests_seen"]:
            node.handle_message(request["body"], None)
        replies = [(reply, key) for reply, key, _ in mailbox.sent]
        broadcasts = [r for r in golden["raw_requests_seen"] if not r["body"]["destination"]]
        expected = len(golden["raw_requests_seen"]) if name == "nb1@fakehost" else len(broadcasts)
        assert len(replies) == expected
        for (reply, key), request in zip(replies, golden["raw_requests_seen"], strict=False):
            assert key == request["body"]["reply_to"]["routing_key"]
            assert list(reply) == [name]
    node, mailbox = _node(handlers)
    node.hostname = "nb1@fakehost"
    for request in golden["raw_requests_seen"]:
        node.handle_message(request["body"], None)
    ping, _, stats = (reply for reply, _, _ in mailbox.sent)
    assert ping == golden["control_ping"][0]  # what Celery's control.ping() returned
    assert stats == golden["inspect_stats_dest"]
