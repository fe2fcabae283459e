"""Several workers in one process: gossip, mingle, elections, heartbeats, reconnection."""

from __future__ import annotations

import threading
import time

import pytest

import nbqueue
from nbqueue.exceptions import BootstepError, TaskRevokedError
from tests.eventlog import EventLog
from tests.helpers import wait_for

FAST = {"heartbeat_interval": 0.1}


def _row(worker, name):
    return next(r for r in worker.blueprint.describe() if r["name"] == name)


def test_the_consumer_blueprint_has_celerys_steps_and_edges(app):
    worker = app.worker()
    rows = {r["name"]: r for r in worker.blueprint.describe() if r["blueprint"] == "consumer"}
    order = list(rows)
    edges = [
        ("connection", "events"),
        ("events", "mingle"),
        ("mingle", "gossip"),
        ("events", "heart"),
        ("mingle", "tasks"),
        ("tasks", "control"),
        ("connection", "agent"),
    ]
    for before, after in edges:
        assert before in rows[after]["requires"], (before, after)
        assert order.index(before) < order.index(after)
    assert rows["agent"]["state"] == "disabled"


@pytest.mark.parametrize(
    ("options", "disabled"),
    [
        ({"without_heartbeat": True}, {"heart", "agent"}),
        ({"without_gossip": True}, {"gossip", "agent"}),
        ({"without_mingle": True}, {"mingle", "agent"}),
        (
            {"without_heartbeat": True, "without_gossip": True, "without_mingle": True},
            {"events", "heart", "gossip", "mingle", "agent"},
        ),
    ],
)
def test_conditional_steps_show_as_disabled_and_the_worker_still_works(app, options, disabled):
    @app.task(name="t.one")
    def one():
        return 1

    with app.worker(**options) as worker:
        rows = [r for r in worker.blueprint.describe() if r["blueprint"] == "consumer"]
        assert {r["name"] for r in rows if r["state"] == "disabled"} == disabled
        assert all(r["state"] == "running" for r in rows if r["name"] not in disabled)
        assert one.delay().get(timeout=10) == 1
        assert app.control.inspect(destination=[worker.hostname]).ping() == {
            worker.hostname: {"ok": "pong"}
        }
    assert all(r["state"] in ("stopped", "disabled") for r in worker.blueprint.describe())


def test_remote_control_can_be_turned_off(app):
    app.conf.worker_enable_remote_control = False
    with app.worker() as worker:
        assert _row(worker, "control")["state"] == "disabled"
        assert app.control.inspect(timeout=0.1).ping() is None


def test_two_workers_see_each_other_through_gossip(app):
    joined = []
    with app.worker(hostname="a@test", **FAST) as a:
        a.steps["gossip"].on.node_join.add(lambda w: joined.append(w.hostname))
        with app.worker(hostname="b@test", **FAST) as b:
            wait_for(lambda: a.steps["gossip"].alive() == ["b@test"], message="a sees b")
            wait_for(lambda: b.steps["gossip"].alive() == ["a@test"], message="b sees a")
            assert joined == ["b@test"]
            assert a.steps["gossip"].info() == {"workers": ["b@test"]}
        wait_for(lambda: a.steps["gossip"].alive() == [], message="a saw b leave")


def test_gossip_notices_a_worker_whose_heartbeats_stopped(app):
    lost = []
    with app.worker(hostname="a@test", **FAST) as a, app.worker(hostname="b@test", **FAST):
        gossip = a.steps["gossip"]
        gossip.on.node_lost.add(lambda w: lost.append(w.hostname))
        wait_for(lambda: gossip.alive() == ["b@test"])
        assert gossip.periodic() == []  # alive: nothing lost
        assert gossip.periodic(now=time.time() + 60) == ["b@test"]  # a minute of silence
        assert lost == ["b@test"] and "b@test" not in gossip.state.workers


def test_mingle_shares_revoked_ids_and_the_clock_at_start(app):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with app.worker(hostname="a@test") as a:
        a.revoke(["revoked-on-a"])
        a.app.clock.adjust(1000)
        second = nbqueue.App("second", broker=f"memory://{app.broker.space.name}")
        second.tasks.register(add)
        try:
            second.clock.adjust(5)
            with second.worker(hostname="b@test") as b:
                b_revoked = list(b.state.revoked)
                assert b.steps["mingle"].info() == {"synced_with": ["a@test"]}
            assert "revoked-on-a" in b_revoked
            assert second.clock.value > 1000  # b's clock moved past a's
        finally:
            second.close()


def test_mingle_gives_our_revoked_ids_to_the_others_too(app):
    with app.worker(hostname="a@test") as a:
        second = nbqueue.App("second", broker=f"memory://{app.broker.space.name}")
        try:
            worker = second.worker(hostname="b@test")
            worker.state.revoked.add("revoked-on-b")  # e.g. restored from a state db
            with worker:
                assert "revoked-on-b" in a.state.revoked
        finally:
            second.close()


def test_a_lone_worker_mingles_with_nobody_and_starts_at_once(app):
    started = time.monotonic()
    with app.worker(hostname="alone@test") as worker:
        assert worker.steps["mingle"].info() == {"synced_with": []}
    # the in-process broker knows nobody else listens: no one-second hello wait
    assert time.monotonic() - started < 5


def test_revoke_through_control_reaches_every_worker(app):
    ran = []
    gate = threading.Event()
    started = threading.Semaphore(0)

    @app.task(name="t.block", acks_late=True)  # holds its worker's only prefetch slot
    def block():
        started.release()
        assert gate.wait(10)

    @app.task(name="t.record")
    def record(i):
        ran.append(i)

    options = {"concurrency": 1, "prefetch_multiplier": 1}
    with (
        app.worker(hostname="a@test", **options) as a,
        app.worker(hostname="b@test", **options) as b,
    ):
        blockers = [block.delay(), block.delay()]
        assert started.acquire(timeout=10) and started.acquire(timeout=10)  # both busy
        waiting = [record.delay(i) for i in range(4)]
        replies = app.control.revoke([r.id for r in waiting], reply=True)
        assert sorted(node for reply in replies for node in reply) == ["a@test", "b@test"]
        assert all(r.id in a.state.revoked and r.id in b.state.revoked for r in waiting)
        gate.set()
        for r in blockers:
            r.get(timeout=10)
        for r in waiting:
            with pytest.raises(TaskRevokedError):
                r.get(timeout=10)
        assert a.drain(timeout=10) and b.drain(timeout=10)
    assert ran == []


def test_revoke_drops_reserved_and_eta_requests_when_they_come_up(app):
    ran = []
    gate = threading.Event()
    started = threading.Event()

    @app.task(name="t.block")
    def block():
        started.set()
        assert gate.wait(10)

    @app.task(name="t.record")
    def record(i):
        ran.append(i)

    with EventLog(app) as log, app.worker(hostname="a@test", concurrency=1, send_events=True) as a:
        blocker = block.delay()
        assert started.wait(10)
        reserved = record.delay(1)
        later = record.apply_async((2,), countdown=0.5)
        wait_for(lambda: reserved.id in a.state.reserved and later.id in a.state.scheduled)
        found = app.control.inspect(destination=["a@test"]).query_task(reserved.id, later.id)
        assert found["a@test"][reserved.id][0] == "reserved"
        assert found["a@test"][later.id][0] == "scheduled"
        (reply,) = app.control.revoke([reserved.id, later.id], reply=True)
        assert reply["a@test"]["ok"].endswith("flagged as revoked")
        gate.set()
        blocker.get(timeout=10)
        assert a.drain(timeout=10)  # the ETA request came up, and was dropped
        revoked = log.wait_type("task-revoked", count=2)
    assert ran == []
    assert {e["uuid"] for e in revoked} == {reserved.id, later.id}
    assert all(e["expired"] is False and e["terminated"] is False for e in revoked)


def test_terminate_reports_the_requests_it_found(app):
    gate = threading.Event()
    started = threading.Event()

    @app.task(name="t.block")
    def block():
        started.set()
        assert gate.wait(10)

    with app.worker(hostname="a@test", concurrency=1):
        running = block.delay()
        assert started.wait(10)
        (found,) = app.control.terminate(running.id, reply=True)
        (unknown,) = app.control.terminate("no-such-id", reply=True)
        with pytest.raises(nbqueue.exceptions.TaskRevokedError):
            running.get(timeout=10)  # terminated: stored REVOKED
        gate.set()
    assert found == {"a@test": {"ok": f"terminate: {running.id}"}}
    assert unknown == {"a@test": {"ok": "terminate: tasks unknown"}}


def test_election_makes_exactly_one_worker_run_the_action(app):
    runs = []

    @app.task(name="t.leader")
    def leader():
        runs.append(1)
        return "led"

    with app.worker(hostname="a@test", **FAST) as a, app.worker(hostname="b@test", **FAST) as b:
        wait_for(lambda: a.steps["gossip"].alive() and b.steps["gossip"].alive())
        app.control.election("e-1", "task", leader.s())
        wait_for(lambda: runs, message="the leader ran the action")
        a.drain(timeout=10)
        b.drain(timeout=10)
    assert runs == [1]


def test_election_refuses_a_lone_worker_unless_forced_and_never_crashes_it(app):
    ran = threading.Event()

    @app.task(name="t.leader")
    def leader():
        ran.set()

    with app.worker(hostname="alone@test") as worker:
        with pytest.raises(ValueError, match="two or more live workers"):
            app.control.election("e-2", "task", leader.s())
        app.control.election("e-3", "task", leader.s(), force=True)
        assert ran.wait(10)  # a lone worker elects itself (Celery 5.7 crashes here)
        assert worker.status == "running"


def test_heart_and_control_survive_a_broker_connection_loss(app):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with EventLog(app) as log, app.worker(hostname="r@test", **FAST) as worker:
        log.wait_type("worker-online", hostname="r@test")
        connection = worker.steps["connection"]
        loop = worker.steps["hub"].loop
        loop.run_sync(connection.on_connection_error, ConnectionError("broker went away"))
        assert connection.reconnects == 1
        consumer_rows = [r for r in worker.blueprint.describe() if r["blueprint"] == "consumer"]
        assert all(r["state"] in ("running", "disabled") for r in consumer_rows)
        assert add.delay(1, 2).get(timeout=10) == 3
        assert app.control.inspect(destination=["r@test"]).ping() == {"r@test": {"ok": "pong"}}
        log.wait_type("worker-online", count=2, hostname="r@test")  # Heart restarted
        offline_then = len(log.of_type("worker-offline", "r@test"))
        log.wait(lambda evs: len(log.of_type("worker-heartbeat", "r@test")) >= 3)
    assert offline_then == 1  # the restart said goodbye once, then hello again


class Recorder:
    """A worker_agent: records what the step does with it."""

    instances: list[Recorder] = []

    def __init__(self, worker):
        self.worker = worker
        self.calls = ["init"]
        Recorder.instances.append(self)

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")


def test_the_agent_step_hosts_the_configured_actor(app):
    app.conf.worker_agent = f"{__name__}:Recorder"
    Recorder.instances.clear()
    with app.worker() as worker:
        assert _row(worker, "agent")["state"] == "running"
        (agent,) = Recorder.instances
        assert agent.worker is worker and agent.calls == ["init", "start"]
    assert agent.calls == ["init", "start", "stop"]


def test_a_failing_agent_is_reported_by_step_name(app):
    class Broken:
        def __init__(self, worker):
            raise RuntimeError("no agent today")

    app.conf.worker_agent = Broken
    worker = app.worker()
    with pytest.raises(BootstepError, match="agent"):
        worker.start()
    assert _row(worker, "agent")["state"] == "failed"
    assert worker.status == "stopped"


def test_mingle_accepts_celery_5_5_replies_with_revoked_as_a_dict(app):
    old = nbqueue.App("old-style", broker=f"memory://{app.broker.space.name}")

    @old.control.commands.inspect_command(name="hello", visible=False)
    def hello_55(ctx, from_node, revoked=None, **kwargs):
        """Answer the way a Celery 5.5 worker does: revoked ids with their stamps."""
        return {"revoked": {"from-5.5": 1234.5}, "clock": 77}

    try:
        with old.worker(hostname="old@test"), app.worker(hostname="new@test") as new:
            assert "from-5.5" in new.state.revoked
            assert app.clock.value > 77
    finally:
        old.close()
