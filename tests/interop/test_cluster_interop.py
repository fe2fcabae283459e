"""Control and events between nbqueue and real Celery 5.7, both ways, in-process and on Redis.

* Celery's ``inspect()``/``control`` get answers from nbqueue workers, and Celery's
  ``EventReceiver`` + ``State`` follow an nbqueue worker through its life.
* nbqueue's ``inspect()`` and event receiver understand a Celery worker (in-process with
  ``start_worker`` on our transport, and as a ``celery worker`` subprocess on Redis).
* A mixed fleet on one Redis: Mingle and Gossip work across the two implementations.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import nbqueue
from tests.eventlog import EventLog
from tests.helpers import wait_for
from tests.interop.conftest import wait_until_answering

celery = pytest.importorskip("celery")
from celery import Celery  # noqa: E402
from celery.contrib.testing.worker import start_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _celery_client(broker: str) -> Celery:
    client = Celery("client", broker=broker)
    client.conf.broker_connection_retry_on_startup = True
    return client


@pytest.fixture(params=["memory", "redis"])
def transport(request):
    """An nbqueue app on the in-process broker or on Redis, and a Celery client beside it."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        app = nbqueue.App("interop", broker=url)
    else:
        app = nbqueue.App("interop")
        url = f"nbmemory://{app.broker.space.name}"
    client = _celery_client(url)
    try:
        yield app, client
    finally:
        client.close()
        app.close()


def _register(app):
    gate = threading.Event()

    @app.task(name="nb.add")
    def add(x, y):
        return x + y

    @app.task(name="nb.gated")
    def gated():
        assert gate.wait(20)
        return "released"

    return add, gated, gate


# Celery looking at nbqueue -----------------------------------------------------------------


def test_celery_inspect_and_control_get_answers_from_an_nbqueue_worker(transport):
    app, client = transport
    _, gated, gate = _register(app)
    with app.worker(hostname="nb@interop", concurrency=2) as worker:
        inspect = client.control.inspect(destination=["nb@interop"], timeout=5)
        assert inspect.ping() == {"nb@interop": {"ok": "pong"}}
        assert client.control.ping(destination=["nb@interop"]) == [{"nb@interop": {"ok": "pong"}}]
        stats = inspect.stats()["nb@interop"]
        assert {"total", "pid", "clock", "uptime", "pool", "broker", "prefetch_count"} <= set(stats)
        running = gated.apply_async(serializer="json")
        wait_for(lambda: worker.state.active, message="the gated task running")
        (active,) = inspect.active()["nb@interop"]
        assert active["id"] == running.id and active["name"] == "nb.gated"
        assert inspect.registered()["nb@interop"] == ["nb.add", "nb.gated"]
        reply = client.control.revoke("from-celery", destination=["nb@interop"], reply=True)
        assert reply == [{"nb@interop": {"ok": "tasks {'from-celery'} flagged as revoked"}}]
        assert "from-celery" in worker.state.revoked
        gate.set()
        assert running.get(timeout=10) == "released"


def test_celery_state_follows_an_nbqueue_worker_online_busy_and_offline(transport):
    app, client = transport
    add, _, _ = _register(app)
    state = client.events.State()
    types: list[str] = []
    offline = threading.Event()
    consuming = threading.Event()

    def on_event(event):
        types.append(event["type"])
        state.event(event)
        if event["type"] == "worker-offline" and event["hostname"] == "nb@interop":
            offline.set()

    conn = client.connection_for_read()
    receiver = client.events.Receiver(conn, handlers={"*": on_event})
    receiver.wakeup_workers = lambda channel=None: consuming.set()  # called once consuming
    thread = threading.Thread(
        target=receiver.capture, kwargs={"timeout": 60}, name="celery-receiver", daemon=True
    )
    thread.start()
    try:
        assert consuming.wait(10)
        with app.worker(hostname="nb@interop", send_events=True, heartbeat_interval=0.5):
            wait_for(lambda: "nb@interop" in {w.hostname for w in state.alive_workers()})
            result = add.apply_async((2, 3), serializer="json")
            assert result.get(timeout=10) == 5
            wait_for(lambda: state.tasks.get(result.id) and state.tasks[result.id].ready)
            task = state.tasks[result.id]
            assert (task.state, task.name, task.result) == ("SUCCESS", "nb.add", "5")
            assert task.worker.hostname == "nb@interop"
            wait_for(lambda: types.count("worker-heartbeat") >= 2, message="heartbeats")
        assert offline.wait(10)
        assert "nb@interop" not in {w.hostname for w in state.alive_workers()}
    finally:
        receiver.should_stop = True
        thread.join(10)
        conn.release()
    assert not thread.is_alive()
    assert types[0] == "worker-online"
    assert {"task-received", "task-started", "task-succeeded"} <= set(types)


# nbqueue looking at Celery -----------------------------------------------------------------


@pytest.fixture
def celery_in_process(app):
    """A real Celery worker in this process, on `app`'s in-process namespace."""
    capp = Celery("celery-side", broker=f"nbmemory://{app.broker.space.name}")
    capp.conf.update(
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
    )

    @capp.task(name="c.add")
    def add(x, y):
        return x + y

    return capp


def test_nbqueue_inspects_and_follows_a_celery_worker_in_process(app, celery_in_process):
    with EventLog(app) as log:
        with start_worker(
            celery_in_process,
            pool="solo",
            hostname="cel@interop",
            perform_ping_check=False,
            without_heartbeat=False,
            loglevel="WARNING",
        ):
            inspect = app.control.inspect(destination=["cel@interop"])
            assert inspect.ping() == {"cel@interop": {"ok": "pong"}}
            assert app.control.inspect().ping() == {"cel@interop": {"ok": "pong"}}
            stats = inspect.stats()["cel@interop"]
            assert stats["pool"]["implementation"].startswith("celery.concurrency.solo")
            assert inspect.registered() == {"cel@interop": ["c.add"]}
            sent = app.send_task("c.add", (2, 3))
            log.wait(lambda evs: log.state.tasks.get(sent.id) and log.state.tasks[sent.id].ready)
            assert [w.hostname for w in log.state.alive_workers()] == ["cel@interop"]
        log.wait_type("worker-offline", hostname="cel@interop")
    task = log.state.tasks[sent.id]
    assert (task.state, task.name, task.result) == ("SUCCESS", "c.add", "5")
    assert log.state.alive_workers() == []


def test_nbqueue_inspects_and_follows_a_celery_worker_on_redis(redis_url, celery_process):
    app = nbqueue.App("interop", broker=redis_url)
    try:
        with EventLog(app) as log:
            proc = celery_process("cel@interop")
            wait_until_answering(app, "cel@interop", proc)
            inspect = app.control.inspect(destination=["cel@interop"], timeout=5)
            assert inspect.registered() == {"cel@interop": ["c.add", "c.block"]}
            assert inspect.stats()["cel@interop"]["broker"]["transport"] == "redis"
            blocked = app.send_task("c.block", ("interop-gate",))
            wait_for(lambda: (inspect.active() or {}).get("cel@interop"), timeout=30)
            (active,) = inspect.active()["cel@interop"]
            assert active["id"] == blocked.id
            import redis

            redis.Redis.from_url(redis_url).rpush("interop-gate", "go")
            sent = app.send_task("c.add", (2, 3))
            log.wait(
                lambda _: log.state.tasks.get(sent.id) and log.state.tasks[sent.id].ready,
                timeout=30,
            )
            assert [w.hostname for w in log.state.alive_workers()] == ["cel@interop"]
            proc.stop()
            log.wait_type("worker-offline", hostname="cel@interop", timeout=30)
        task = log.state.tasks[sent.id]
        assert (task.state, task.name, task.result) == ("SUCCESS", "c.add", "5")
        assert any(body for body, *_ in log.raw if isinstance(body, list))  # task.multi
    finally:
        app.close()


def test_mingle_and_gossip_in_a_mixed_fleet_on_redis(redis_url, celery_process):
    app = nbqueue.App("interop", broker=redis_url)
    try:
        with app.worker(hostname="nb1@interop", heartbeat_interval=0.5) as nb1:
            nb1.revoke(["revoked-by-nbqueue"])
            proc = celery_process("cel@interop", "DEBUG")  # Celery logs gossip at debug
            wait_until_answering(app, "cel@interop", proc)
            ins = app.control.inspect(destination=["cel@interop"], timeout=5)
            # Celery's Mingle took our revoked ids when it started
            assert "revoked-by-nbqueue" in ins.revoked()["cel@interop"]
            assert "mingle: sync with 1 nodes" in proc.log()
            # our Gossip follows the Celery worker, and Celery's follows us
            wait_for(lambda: "cel@interop" in nb1.steps["gossip"].alive(), timeout=30)
            wait_for(lambda: "nb1@interop joined the party" in proc.log(), timeout=30)
            # a Celery-side revoke, then a new nbqueue worker mingles it in
            app.control.revoke("revoked-by-celery", destination=["cel@interop"], reply=True)
            with app.worker(hostname="nb2@interop") as nb2:
                assert "revoked-by-celery" in nb2.state.revoked
                assert set(nb2.steps["mingle"].info()["synced_with"]) == {
                    "nb1@interop",
                    "cel@interop",
                }
            wait_for(lambda: "nb2@interop left" in proc.log(), timeout=30)
        started = time.monotonic()
        proc.stop()
        assert time.monotonic() - started < 30
    finally:
        app.close()
