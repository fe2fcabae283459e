"""Broker faults with a real redis-server that the test starts, restarts and stops.

The server runs on a free loopback port in the test's tmp dir with an append-only file, so
what was queued survives the restart, as on a production Redis with persistence. A restart
here is Redis's graceful shutdown (SIGTERM), which completes and fsyncs the file (a crash
could lose the last second of writes with ``appendfsync everysec``). Results go to a second
redis-server of the test's own, which stays up: the fault under test is the broker's, and
the backend is where the outcome is checked.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import redis

from tests.helpers import wait_for
from tests.integration import durable_tasks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, persisting every write (append-only file)."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @property
    def persistence(self) -> list[str]:
        """An append-only file in the tmp dir; no RDB snapshots; a log file."""
        log = str(self.directory / "redis.log")
        aof = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")
        return ["--dir", str(self.directory), *aof, "--logfile", log]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"), *self.persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{self.log()}")
            try:
                return bool(client.ping())
            except redis.exceptions.BusyLoadingError:
                return False  # still loading the append-only file
            except redis.ConnectionError:
                return False

        try:
            wait_for(answers, timeout=30, message=f"redis-server on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis's graceful shutdown (the append-only file is flushed and fsynced)."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def backend_redis(tmp_path):
    """A second server of the test's own for results: it stays up (and no other test's
    SCRIPT FLUSH on the shared Redis can race the result scripts)."""
    directory = tmp_path / "backend"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server.url
    server.kill()


def broker_state(server: RedisServer) -> dict[str, int]:
    """How many messages wait in the queue and how many are unacked, on `server`."""
    client = redis.Redis(port=server.port)
    try:
        return {"waiting": client.llen("celery"), "unacked": client.hlen("unacked")}
    finally:
        client.close()


TASKS = 10_000
WORKERS = 2
CONCURRENCY = 4


@pytest.mark.slow
def test_ten_thousand_tasks_across_a_redis_restart_each_result_is_stored_once(
    own_redis, backend_redis, durable_worker, tmp_path
):
    redis_url = backend_redis
    env = {
        "NBQ_TEST_BROKER": own_redis.url,
        "NBQ_TEST_BACKEND": redis_url,
        "NBQ_TEST_VISIBILITY": "5",
    }
    workers = [
        durable_worker(f"w{i}", env, "-c", str(CONCURRENCY), "--without-mingle")
        for i in range(WORKERS)
    ]
    for worker in workers:
        worker.wait_ready()
    retried = threading.Event()
    policy = {
        "max_retries": 60,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
        "errback": lambda exc, interval: retried.set(),
    }
    client = durable_tasks.make_app(own_redis.url, redis_url, task_publish_retry_policy=policy)
    backend = redis.Redis.from_url(redis_url)
    ids: list[str] = []
    try:
        for i in range(TASKS * 3 // 10):
            ids.append(client.send_task("durable.double", (i,)).id)
        own_redis.stop()

        def restart() -> None:
            # the client is retrying and every worker too (to reconnect, or to record a
            # delivery it popped just before): start it again
            try:
                retried.wait(30)
                for worker in workers:
                    wait_for(lambda w=worker: "retrying" in w.output(), timeout=20)
            finally:
                own_redis.start()

        restarter = threading.Thread(target=restart, name="restart-redis")
        restarter.start()
        for i in range(TASKS * 3 // 10, TASKS):
            ids.append(client.send_task("durable.double", (i,)).id)
        restarter.join(30)
        assert retried.is_set(), "the client never had to retry a publish"

        keys = [f"celery-task-meta-{task_id}" for task_id in ids]
        try:
            wait_for(lambda: backend.exists(*keys) == TASKS, timeout=90)
        except AssertionError:
            runs = backend.hlen(durable_tasks.RUNS_KEY)
            raise AssertionError(
                f"{backend.exists(*keys)} of {TASKS} results, {runs} tasks run; broker: "
                f"{broker_state(own_redis)}\n" + "\n".join(w.output()[-4000:] for w in workers)
            ) from None
    finally:
        client.close()

    metas = [json.loads(raw) for raw in backend.mget(keys)]
    assert [(m["task_id"], m["status"], m["result"]) for m in metas] == [
        (task_id, "SUCCESS", 2 * i) for i, task_id in enumerate(ids)
    ]
    assert len(list(backend.scan_iter("celery-task-meta-*", count=1000))) == TASKS
    runs = {k.decode(): int(v) for k, v in backend.hgetall(durable_tasks.RUNS_KEY).items()}
    assert set(runs) == set(ids)
    # at least once: a task whose ack the restart swallowed ran again after the visibility
    # timeout; only messages unacked at the restart can (prefetch: concurrency x 4 each)
    reruns = sum(runs.values()) - TASKS
    print(f"{sum(runs.values())} runs for {TASKS} tasks ({reruns} ran again)")
    assert 0 <= reruns <= WORKERS * CONCURRENCY * 4

    for worker in workers:
        out = worker.output()
        assert "broker connection lost" in out and "unreachable" in out, out[-3000:]
        assert "reconnected to broker" in out, out[-3000:]
        worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.proc.wait(timeout=60) == 0, worker.output()[-3000:]
        assert "abandoning running tasks" not in worker.output()  # nothing stuck as reserved
    broker = redis.Redis(port=own_redis.port)
    assert broker.llen("celery") == 0 and broker.hlen("unacked") == 0
    broker.close()


def _runs(log_dir: Path) -> list[dict]:
    path = log_dir / "runs.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.mark.slow
def test_what_a_worker_held_when_redis_went_away_runs_after_it_is_back(
    own_redis, redis_url, durable_worker, tmp_path
):
    """Reserved messages cannot be returned to a broker that is down: they stay unacked in
    Redis and come back after the visibility timeout. The running task ends while Redis is
    down: its (late) ack is kept and sent once the worker is reconnected, so it does not
    run again. Nothing is left behind in the worker."""
    env = {"NBQ_TEST_BROKER": own_redis.url, "NBQ_TEST_BACKEND": redis_url}
    env["NBQ_TEST_VISIBILITY"] = "3"
    worker = durable_worker("w", env, "-c", "1", "--prefetch-multiplier", "4")
    worker.wait_ready()
    client = durable_tasks.make_app(own_redis.url, redis_url)
    try:
        running = client.send_task("durable.hold", (str(tmp_path), "running"))
        reserved = [client.send_task("durable.note", (str(tmp_path), f"r{i}")) for i in range(3)]
        broker = redis.Redis(port=own_redis.port)
        wait_for(lambda: broker.hlen("unacked") == 4, timeout=30, message="all four reserved")
        broker.close()
        wait_for(lambda: _runs(tmp_path), timeout=30, message="the held task to start")

        own_redis.stop()
        wait_for(
            lambda: "could not return 3 unstarted message(s)" in worker.output(),
            timeout=30,
            message="the worker to try to return its reserved messages",
        )
        (tmp_path / "release").touch()  # the running task ends while Redis is down
        wait_for(lambda: "unreachable" in worker.output(), timeout=30, message="a retry")
        own_redis.start()
        wait_for(lambda: "reconnected to broker" in worker.output(), timeout=30)

        assert [r.get(timeout=60) for r in reserved] == [
            {"pid": worker.pid, "redelivered": True}
        ] * 3
        broker = redis.Redis(port=own_redis.port)
        wait_for(lambda: broker.hlen("unacked") == 0, timeout=30, message="every ack sent")
        broker.close()
        assert running.get(timeout=30) == {"pid": worker.pid, "redelivered": False}
    finally:
        client.close()
    runs = [(r["tag"], r["redelivered"]) for r in _runs(tmp_path)]
    assert sorted(runs) == sorted([("running", False), ("r0", True), ("r1", True), ("r2", True)])
    assert "ack of" in worker.output() or "acks kept" in worker.output()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=60) == 0
    out = worker.output()
    assert "abandoning running tasks" not in out, out  # nothing stuck as reserved or active
    broker = redis.Redis(port=own_redis.port)
    assert broker.llen("celery") == 0 and broker.hlen("unacked") == 0
    broker.close()


def test_a_worker_whose_broker_is_down_at_start_exits_after_its_retries_naming_the_url(
    redis_url, durable_worker
):
    url = f"redis://127.0.0.1:{_free_port()}/0"
    env = {"NBQ_TEST_BROKER": url, "NBQ_TEST_BACKEND": redis_url, "NBQ_TEST_MAX_RETRIES": "2"}
    worker = durable_worker("down", env)
    assert worker.proc.wait(timeout=60) == 1
    out = worker.output()
    assert out.count("unreachable") == 2 and "retrying in 1.2 s (2/2)" in out, out
    assert f"cannot connect to broker {url} after 2 retries" in out, out
    assert "Error: the worker could not start" in out, out


def test_a_worker_that_must_not_retry_at_start_fails_at_once(redis_url, durable_worker):
    url = f"redis://127.0.0.1:{_free_port()}/0"
    env = {"NBQ_TEST_BROKER": url, "NBQ_TEST_BACKEND": redis_url}
    env["NBQ_TEST_RETRY_ON_STARTUP"] = "0"
    worker = durable_worker("down", env)
    assert worker.proc.wait(timeout=60) == 1
    out = worker.output()
    assert "unreachable" not in out, out
    assert f"cannot connect to broker {url} after 0 retries" in out, out


def test_a_client_gives_up_after_its_publish_retry_policy_with_an_operational_error(redis_url):
    from kombu.exceptions import OperationalError

    from nbqueue.exceptions import BrokerError

    url = f"redis://127.0.0.1:{_free_port()}/0"
    errors: list[float] = []
    policy = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.1,
        "interval_max": 0.2,
        "errback": lambda exc, interval: errors.append(interval),
    }
    client = durable_tasks.make_app(url, redis_url, task_publish_retry_policy=policy)
    try:
        with pytest.raises(OperationalError) as info:
            client.send_task("durable.note", ("/nowhere", "x"))
    finally:
        client.close()
    assert isinstance(info.value, BrokerError)
    assert f"cannot connect to broker {url} after 3 retries" in str(info.value)
    assert errors == [0, 0.1, 0.2]  # the policy's backoff, then the error


def test_a_delivery_popped_just_before_redis_goes_away_is_recorded_once_it_is_back(own_redis):
    """BRPOP takes a message off its queue; recording it as unacked is the next command.
    Redis stopping in between used to lose the message: the record is now retried until
    Redis is back, and the message is then safely unacked there."""
    from kombu import Connection, Consumer, Producer, Queue

    from nbqueue.messaging import resolve_broker_url

    url = resolve_broker_url(own_redis.url, "unused")
    got: list = []
    with Connection(url) as conn:
        Queue("q")(conn.default_channel).declare()
        channel = conn.channel()
        run_script = channel.run_script
        restarted = threading.Thread(target=own_redis.start, name="restart-redis")

        def fault_then_record(name, *args, **kwargs):
            # BRPOP's delivery is recorded alone, or by the fetch script given its record
            # (after count, time and the acked tags)
            recording = name == "record" or (name == "fetch" and len(args) > 3 + args[2])
            if recording and restarted.ident is None:
                own_redis.stop()  # between the BRPOP and the record
                restarted.start()
            return run_script(name, *args, **kwargs)

        channel.run_script = fault_then_record
        Consumer(channel, [Queue("q")], on_message=got.append).consume()
        _drain_once(conn)  # nothing waits: the consumer is now blocked in BRPOP
        Producer(conn.default_channel).publish("precious", routing_key="q")
        wait_for(lambda: _drain_once(conn) or got, timeout=30, message="the delivery")
        restarted.join(30)
        raw = redis.Redis(port=own_redis.port)
        assert raw.hlen("unacked") == 1 and raw.llen("q") == 0
        (message,) = got
        assert message.payload == "precious"
        message.ack()
        assert raw.hlen("unacked") == 0
        raw.close()
        channel.close()


def _drain_once(conn) -> bool:
    with contextlib.suppress(TimeoutError):
        conn.drain_events(timeout=0.2)
    return False


def test_acks_not_sent_when_redis_went_away_are_sent_by_the_next_channel(own_redis):
    """An ack waiting to ride on the next fetch when the connection dies is handed to the
    next channel to that database, which sends it: the message does not come back."""
    from kombu import Connection, Consumer, Producer, Queue

    from nbqueue.messaging import resolve_broker_url

    url = resolve_broker_url(own_redis.url, "unused")
    raw = redis.Redis(port=own_redis.port)
    got: list = []
    conn = Connection(url)
    Producer(conn.default_channel).publish("once", routing_key="q", declare=[Queue("q")])
    channel = conn.channel()
    Consumer(channel, [Queue("q")], on_message=got.append).consume()
    wait_for(lambda: _drain_once(conn) or got, timeout=30, message="the delivery")
    _drain_once(conn)  # the queue is empty: a BRPOP is outstanding
    got[0].ack()
    assert list(channel.acked) == [got[0].delivery_tag] and raw.hlen("unacked") == 1
    own_redis.stop()
    with contextlib.suppress(redis.ConnectionError):  # the outstanding BRPOP's reply
        channel.close()  # cannot send the ack: hands it over
    with contextlib.suppress(redis.ConnectionError):
        conn.release()
    own_redis.start()
    assert raw.hlen("unacked") == 1
    with Connection(url) as conn:
        channel = conn.channel()
        Consumer(channel, [Queue("q")], on_message=got.append).consume()
        _drain_once(conn)  # the first fetch sends the ack
        assert raw.hlen("unacked") == 0 and raw.zcard("unacked_index") == 0
        assert len(got) == 1  # and nothing came back
        channel.close()
    raw.close()
