"""Remote control of running workers: Celery's commands, reply shapes, filters, bad input."""

from __future__ import annotations

import threading
import time

import pytest
from kombu import Exchange, Producer, Queue

import nbqueue
from tests import captures
from tests.helpers import wait_for

SESSION = captures.load("worker_session_py.json")
SESSION2 = captures.load("worker_session_py_part2.json")
CELERY_NODE = "w1@wirehost"


def _only(reply: dict, node: str):
    assert list(reply) == [node]
    return reply[node]


@pytest.fixture
def worker(app):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with app.worker(hostname="c1@test", concurrency=2) as w:
        yield w


def inspect(app, **kw):
    return app.control.inspect(destination=["c1@test"], **kw)


def test_inspect_replies_have_celerys_shapes(app, worker):
    ins = inspect(app)
    assert ins.ping() == {"c1@test": {"ok": "pong"}}
    stats = _only(ins.stats(), "c1@test")
    assert set(SESSION["inspect_stats"][CELERY_NODE]) <= set(stats)
    assert isinstance(stats["clock"], str) and stats["pool"]["max-concurrency"] == 2
    assert stats["broker"]["transport"] == "nbmemory" and "password" not in stats["broker"]
    assert set(stats["rusage"]) == set(SESSION["inspect_stats"][CELERY_NODE]["rusage"])
    assert ins.active() == {"c1@test": []} and ins.reserved() == {"c1@test": []}
    assert ins.scheduled() == {"c1@test": []} and ins.revoked() == {"c1@test": []}
    assert ins.registered() == {"c1@test": ["t.add"]}  # celery.* built-ins hidden
    assert ins.registered("ignore_result") == {"c1@test": ["t.add [ignore_result=False]"]}
    (queue,) = _only(ins.active_queues(), "c1@test")
    assert queue == SESSION["inspect_active_queues"][CELERY_NODE][0]
    assert set(_only(ins.clock(), "c1@test")) == {"clock"}
    assert (
        _only(ins.query_task("unknown"), "c1@test")
        == SESSION["inspect_query_task_none"][CELERY_NODE]
    )
    report = _only(ins.report(), "c1@test")["ok"]
    assert "software -> nbqueue:" in report and "kombu:" in report


def test_conf_shows_changed_settings_with_secrets_masked(app):
    app.conf.update(
        secret_key="hunter2",
        result_backend="redis://:pw@127.0.0.1:6379/1",
        task_acks_late=True,
    )
    with app.worker(hostname="c1@test"):
        conf = _only(inspect(app).conf(), "c1@test")
        everything = _only(inspect(app).conf(with_defaults=True), "c1@test")
    assert conf["secret_key"] == "********" and conf["task_acks_late"] is True
    assert conf["result_backend"] == "redis://:**@127.0.0.1:6379/1"
    assert "task_default_queue" not in conf and everything["task_default_queue"] == "celery"
    assert everything["result_expires"] == 86400.0


def test_active_reserved_scheduled_and_query_task_show_requests(app):
    gate = threading.Event()
    started = threading.Event()

    @app.task(name="t.block")
    def block(n):
        started.set()
        assert gate.wait(10)

    with app.worker(hostname="c1@test", concurrency=1) as w:
        running = block.delay(1)
        assert started.wait(10)
        waiting = block.delay(2)
        later = block.apply_async((3,), countdown=3600, priority=6)
        wait_for(lambda: waiting.id in w.state.reserved and later.id in w.state.scheduled)
        ins = inspect(app)
        (active,) = _only(ins.active(), "c1@test")
        (reserved,) = _only(ins.reserved(), "c1@test")
        (scheduled,) = _only(ins.scheduled(), "c1@test")
        queried = _only(ins.query_task([running.id, later.id]), "c1@test")
        gate.set()
        running.get(timeout=10)
        waiting.get(timeout=10)
    celery_active = SESSION["inspect_active_running"][CELERY_NODE][0]
    assert set(celery_active) <= set(active)
    assert active["id"] == running.id and active["args"] == [1] and active["acknowledged"]
    assert isinstance(active["time_start"], float)
    assert reserved["id"] == waiting.id and reserved["time_start"] is None
    celery_scheduled = SESSION["inspect_scheduled_running"][CELERY_NODE][0]
    assert set(scheduled) == set(celery_scheduled)
    assert scheduled["request"]["id"] == later.id and scheduled["eta"].endswith("+00:00")
    assert queried[running.id][0] == "active" and queried[later.id][0] == "scheduled"


def test_control_replies_have_celerys_texts(app, worker):
    dest = {"destination": ["c1@test"], "reply": True}
    session = SESSION
    assert app.control.ping(destination=["c1@test"]) == [{"c1@test": {"ok": "pong"}}]
    assert app.control.rate_limit("t.add", "10/s", **dest) == [
        {"c1@test": session["control_rate_limit"][0][CELERY_NODE]}
    ]
    assert worker.rate_limits["t.add"] == "10/s"
    assert app.control.rate_limit("t.add", None, **dest) == [
        {"c1@test": {"ok": "rate limit disabled successfully"}}
    ]
    bad = app.control.rate_limit("t.add", "lots", **dest)
    assert bad[0]["c1@test"]["error"].startswith("Invalid rate limit string")
    assert app.control.rate_limit("t.nope", "1/s", **dest) == [
        {"c1@test": {"error": "unknown task"}}
    ]
    assert app.control.time_limit("t.add", soft=5, hard=10, **dest) == [
        {"c1@test": session["control_time_limit"][0][CELERY_NODE]}
    ]
    assert worker.time_limits["t.add"] == (10.0, 5.0)
    assert app.control.heartbeat(**dest) == [{"c1@test": None}]
    assert app.control.pool_grow(2, **dest) == [
        {"c1@test": session["control_pool_grow"][0][CELERY_NODE]}
    ]
    assert worker.steps["pool"].pool.size == 4
    assert app.control.pool_shrink(1, **dest) == [
        {"c1@test": session["control_pool_shrink"][0][CELERY_NODE]}
    ]
    assert app.control.autoscale(4, 1, **dest) == [
        {"c1@test": session["control_autoscale"][0][CELERY_NODE]}
    ]
    assert app.control.broadcast("no_such_cmd", **dest) == [
        {"c1@test": SESSION2["control_broadcast_unknown"][0][CELERY_NODE]}
    ]


def test_add_and_cancel_consumer(app, worker):
    dest = {"destination": ["c1@test"], "reply": True}
    assert app.control.add_consumer("extra", **dest) == [
        {"c1@test": SESSION["control_add_consumer"][0][CELERY_NODE]}
    ]
    queues = _only(inspect(app).active_queues(), "c1@test")
    assert queues == SESSION["inspect_active_queues_after_add"][CELERY_NODE]
    assert app.send_task("t.add", (1, 2), queue="extra").get(timeout=10) == 3
    assert app.control.cancel_consumer("extra", **dest) == [
        {"c1@test": SESSION["control_cancel_consumer"][0][CELERY_NODE]}
    ]
    assert [q["name"] for q in _only(inspect(app).active_queues(), "c1@test")] == ["celery"]


def test_hello_answers_others_and_returns_null_to_itself(app, worker):
    worker.revoke(["old-id"])
    ins = app.control.inspect(destination=["c1@test"])
    reply = _only(ins.hello("other@test", ["their-id"]), "c1@test")
    assert set(reply) == set(SESSION2["control_broadcast_hello"][0][CELERY_NODE])
    assert reply["revoked"] == ["old-id", "their-id"]  # theirs merged into ours
    assert app.control.broadcast(
        "hello", {"from_node": "c1@test"}, destination=["c1@test"], reply=True
    ) == [{"c1@test": None}]
    dict_form = ins.hello("old@test", {"five-five-id": 123.0})  # Celery 5.5 sends a dict
    assert "five-five-id" in _only(dict_form, "c1@test")["revoked"]


def test_shutdown_stops_the_worker_without_a_reply(app, worker):
    assert app.control.shutdown(destination=["c1@test"], reply=True, timeout=0.5) == []
    assert worker.join(10)
    assert worker.status == "stopped"


def test_destination_and_pattern_pick_the_nodes(app):
    with (
        app.worker(hostname="x1@test"),
        app.worker(hostname="x2@test"),
        app.worker(hostname="y1@test"),
    ):
        everyone = app.control.inspect().ping()
        assert sorted(everyone) == ["x1@test", "x2@test", "y1@test"]
        assert sorted(app.control.inspect(pattern="x*").ping()) == ["x1@test", "x2@test"]
        by_regex = app.control.inspect(pattern=r"^y\d@", matcher="pcre").ping()
        assert sorted(by_regex) == ["y1@test"]
        assert app.control.inspect(destination="x2@test").ping() == {"ok": "pong"}
        replies = app.control.ping(destination=["x1@test", "y1@test"])
        assert sorted(node for r in replies for node in r) == ["x1@test", "y1@test"]


def test_nobody_listening_answers_none_at_once(app):
    started = time.monotonic()
    assert app.control.inspect().ping() is None
    assert app.control.ping() == []
    with app.worker(hostname="c1@test"):
        assert app.control.inspect(destination=["typo@test"]).ping() is None
    assert time.monotonic() - started < 1.0  # the in-process broker knows nobody listens


def test_each_app_has_its_own_commands(app):
    other = nbqueue.App("other")

    @app.control.commands.inspect_command()
    def depth(ctx):
        """How many messages wait in the worker's queues."""
        return ctx.worker.queue_sizes()

    try:
        assert "depth" in app.control.commands and "depth" not in other.control.commands
        assert app.control.commands["depth"].help.startswith("How many messages")
        with app.worker(hostname="c1@test"):
            assert inspect(app)._request("depth") == {"c1@test": {"celery": 0}}
        assert {c.name for c in app.control.commands} >= {
            "ping", "stats", "active", "reserved", "scheduled", "registered", "revoked",
            "active_queues", "conf", "report", "clock", "hello", "query_task", "revoke",
            "terminate", "rate_limit", "time_limit", "shutdown", "pool_grow", "pool_shrink",
            "autoscale", "add_consumer", "cancel_consumer", "enable_events",
            "disable_events", "heartbeat", "election",
        }  # fmt: skip
        assert app.control.commands["dump_tasks"] is app.control.commands["registered"]
    finally:
        other.close()


def test_a_failing_command_answers_an_error_and_the_worker_carries_on(app, worker):
    @app.control.commands.control_command()
    def explode(ctx):
        raise RuntimeError("kaboom")

    # registered after the worker started: the worker's node does not know it
    reply = app.control.broadcast("explode", destination=["c1@test"], reply=True)
    assert reply == [{"c1@test": {"error": "KeyError('explode')"}}]
    with app.worker(hostname="c2@test"):
        reply = app.control.broadcast("explode", destination=["c2@test"], reply=True)
    assert reply == [{"c2@test": {"error": "RuntimeError('kaboom')"}}]
    assert inspect(app).ping() == {"c1@test": {"ok": "pong"}}


def test_bad_control_messages_are_logged_and_dropped(app, worker, caplog):
    exchange = Exchange("celery.pidbox", type="fanout", durable=False)
    with app.connection() as conn:
        producer = Producer(conn.default_channel, exchange=exchange)
        producer.publish(["not", "a", "request"], serializer="json")
        producer.publish({"method": "ping", "arguments": "nope"}, serializer="json")
        producer.publish({"method": "ping"}, serializer="pickle")  # never unpickled
    wait_for(lambda: "bad control request" in caplog.text)
    wait_for(lambda: "arguments of 'ping' must be a mapping" in caplog.text)
    assert inspect(app).ping() == {"c1@test": {"ok": "pong"}}


def test_request_envelope_matches_celerys(app):
    """What our client publishes is what Celery's client publishes (captured on Redis)."""
    golden = captures.load("celery_events.json")["celery_pidbox_request"]
    with app.connection() as conn:
        exchange = Exchange("celery.pidbox", type="fanout", durable=False)
        queue = Queue("spy.celery.pidbox", exchange, auto_delete=True)(conn.default_channel)
        queue.declare()
        # the spy's queue looks like node "spy"'s mailbox: a request with a reply ticket
        app.control.broadcast("ping", destination=["spy"], reply=True, timeout=0.2)
        message = queue.get(no_ack=True)
        queue.delete()
    body = message.decode()
    assert list(body) == list(golden["body_decoded"])
    assert body["method"] == "ping" and body["destination"] == ["spy"]
    assert set(body["reply_to"]) == {"exchange", "routing_key"}
    assert body["reply_to"]["exchange"] == "reply.celery.pidbox"
    assert set(message.headers) == set(golden["payload"]["headers"]) == {"clock", "expires"}
