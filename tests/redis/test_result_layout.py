"""Results in a real Redis, compared byte for byte with what Celery 5.7 wrote (the captures)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import nbqueue
from nbqueue.protocol import new_id
from tests.captures import load_lines
from tests.helpers import wait_for

MONITOR = load_lines("redis_results_monitor.jsonl")


def _captured(cmd: str, status: str | None, name: str | None = None) -> dict[str, Any]:
    """The first meta Celery stored with `cmd` for a task called `name` in `status`."""
    for line in MONITOR:
        if line["cmd"] != cmd:
            continue
        meta = line["args"][-1]
        if isinstance(meta, dict) and meta.get("status") == status and meta.get("name") == name:
            return meta
    raise LookupError((cmd, status, name))


@pytest.fixture
def client(redis_db: int) -> Iterator[redis.Redis]:
    conn = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    yield conn
    conn.close()


@pytest.fixture
def wire_app(redis_url: str) -> Iterator[Any]:
    """Celery's capture session: result_extended, task_track_started, node w1@wirehost."""
    app = nbqueue.App("wire", backend=redis_url, result_extended=True, task_track_started=True)

    @app.task(name="wiretasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="wiretasks.fail")
    def fail(message: str) -> None:
        raise ValueError(message)

    try:
        yield app
    finally:
        app.close()


class Published:
    """Every message published on result channels while it runs (a raw subscriber)."""

    def __init__(self, client: redis.Redis) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe("celery-task-meta-*")
        self.pubsub.get_message(timeout=5)  # the psubscribe confirmation
        self.messages: list[tuple[bytes, bytes]] = []

    def collect(self, channel: str, count: int) -> list[bytes]:
        def arrived() -> bool:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "pmessage":
                self.messages.append((message["channel"], message["data"]))
            return len([m for m in self.messages if m[0] == channel.encode()]) >= count

        wait_for(arrived, timeout=10, message=f"{count} message(s) on {channel}")
        return [data for chan, data in self.messages if chan == channel.encode()]

    def close(self) -> None:
        self.pubsub.close()


def _as_celery_wrote(captured: dict[str, Any], ours: dict[str, Any]) -> bytes:
    """The capture, with this run's ids, dates and pid: what Celery would store for it."""
    expected = dict(captured)
    for key in ("task_id", "date_done", "traceback"):
        if key in expected:
            expected[key] = ours[key]
    if isinstance(expected["result"], dict) and "pid" in expected["result"]:
        expected["result"] = {**expected["result"], "pid": ours["result"]["pid"]}
    return json.dumps(expected).encode()


def test_success_and_started_metas_are_celerys_bytes_with_setex_and_publish(
    wire_app: Any, client: redis.Redis
) -> None:
    published = Published(client)
    try:
        with wire_app.worker(concurrency=1, hostname="w1@wirehost"):
            result = wire_app.tasks["wiretasks.add"].delay(2, 3)
            assert result.get(timeout=10) == 5
        key = f"celery-task-meta-{result.id}"
        started_raw, success_raw = published.collect(key, 2)
    finally:
        published.close()
    stored = client.get(key)
    assert stored == success_raw  # stored and published: the same bytes
    assert 86390 < client.ttl(key) <= 86400  # SETEX result_expires (1 day)
    success = json.loads(success_raw)
    assert success_raw == _as_celery_wrote(_captured("SETEX", "SUCCESS", "wiretasks.add"), success)
    started = json.loads(started_raw)
    assert started_raw == _as_celery_wrote(_captured("SETEX", "STARTED", "wiretasks.add"), started)


def test_a_failure_is_celerys_exception_document(wire_app: Any, client: redis.Redis) -> None:
    with wire_app.worker(concurrency=1, hostname="w1@wirehost"):
        result = wire_app.tasks["wiretasks.fail"].delay("kaboom")
        with pytest.raises(ValueError, match="kaboom"):
            result.get(timeout=10)
    raw = client.get(f"celery-task-meta-{result.id}")
    meta = json.loads(raw)
    assert meta["traceback"].startswith("Traceback (most recent call last):")
    assert raw == _as_celery_wrote(_captured("SETEX", "FAILURE", "wiretasks.fail"), meta)


def test_a_saved_group_is_celerys_taskset_document(wire_app: Any, client: redis.Redis) -> None:
    (captured,) = [
        line["args"][-1]
        for line in MONITOR
        if line["args"][0].startswith("celery-taskset-meta-") and line["cmd"] == "SETEX"
    ]
    (gid, _), members = captured["result"]
    ids = [member[0][0] for member in members]
    group = wire_app.GroupResult(gid, [wire_app.AsyncResult(i) for i in ids]).save()
    raw = client.get(f"celery-taskset-meta-{group.id}")
    assert raw == json.dumps(captured).encode()
    assert 86390 < client.ttl(f"celery-taskset-meta-{group.id}") <= 86400


def test_global_keyprefix_follows_celerys_rule(redis_url: str, client: redis.Redis) -> None:
    app = nbqueue.App(
        "prefixed",
        backend=redis_url,
        result_backend_transport_options={"global_keyprefix": "team"},
    )
    try:
        task_id = new_id()
        app.backend.store_result(task_id, 1, "SUCCESS")
        assert client.exists(f"team_celery-task-meta-{task_id}")
        assert app.AsyncResult(task_id).get(timeout=5) == 1
    finally:
        app.close()


def _chord_steps(commands: list[tuple[str, list[str]]], gid: str, ids: list[str]) -> list[Any]:
    """Chord-key commands, with ids and the claim token replaced by names."""
    prefix = f"celery-taskset-meta-{gid}"
    names = {tid: f"t{i}" for i, tid in enumerate(ids)}
    steps = []
    for cmd, args in commands:
        if cmd not in {"GET", "SET", "DEL", "ZADD", "SADD", "ZRANGE"} or not args:
            continue
        if not args[0].startswith(prefix + "."):
            continue  # Celery also GETs the bare group key, looking for a saved GroupResult
        keys = [a[len(prefix) :] for a in args if a.startswith(prefix + ".")]
        rest = [a for a in args[len(keys) :]]
        if cmd == "ZADD":
            rest = rest[:1]  # the score (group index); the member is the encoded result
        if cmd == "SADD":
            tid, _, index = rest[0].rpartition(":")
            rest = [f"{names[tid]}:{index}"]
        if cmd == "SET" and keys == [".c"] and rest[0] != "done":
            rest = ["<token>", *rest[1:]]
        steps.append((cmd, *keys, *rest))
    return steps


def _captured_chord() -> tuple[list[tuple[str, list[str]]], str, list[str]]:
    gid = "de653421-e288-46dc-bdd5-d5c73a37739d"
    commands, ids = [], []
    for line in MONITOR:
        args = [json.dumps(a) if not isinstance(a, str) else a for a in line["args"]]
        commands.append((line["cmd"], args))
        if line["cmd"] == "SADD" and gid in args[0]:
            ids.append(args[1].rpartition(":")[0])
    return commands, gid, ids


def _monitor(db: int, stop: str) -> tuple[threading.Thread, list[tuple[str, list[str]]]]:
    seen: list[tuple[str, list[str]]] = []
    ready = threading.Event()
    watcher = redis.Redis(host="127.0.0.1", port=6379, db=db)

    def run() -> None:
        with watcher.monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                if entry["db"] != db:
                    continue
                cmd, *args = entry["command"].split(" ")
                if cmd == "ECHO" and args == [stop]:
                    return
                seen.append((cmd.upper(), args))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread, seen


def test_the_chord_join_issues_celerys_commands(wire_app: Any, client: redis.Redis) -> None:
    captured, captured_gid, captured_ids = _captured_chord()
    db = client.connection_pool.connection_kwargs["db"]
    stop = new_id()
    thread, seen = _monitor(db, stop)
    client.echo("warm-up")  # MONITOR sees commands sent after it started
    backend = wire_app.backend
    gid, ids = new_id(), [new_id() for _ in range(3)]
    backend.set_chord_size(gid, 3)
    parts = [
        backend.add_chord_part(gid, tid, i, "SUCCESS", 2 * (i + 1)) for i, tid in enumerate(ids)
    ]
    assert parts[:2] == [None, None]
    assert [value for _, _, value in parts[2]] == [2, 4, 6]
    backend.on_chord_body_applied(gid)
    client.echo(stop)
    thread.join(10)
    ours = _chord_steps(seen, gid, ids)
    theirs = _chord_steps(captured, captured_gid, captured_ids)
    assert ours == theirs
    assert client.get(f"celery-taskset-meta-{gid}.c") == b"done"
    assert 290 < client.ttl(f"celery-taskset-meta-{gid}.c") <= 300


def test_chord_parts_are_celerys_result_tuples(wire_app: Any, client: redis.Redis) -> None:
    backend = wire_app.backend
    gid, ids = new_id(), [new_id() for _ in range(3)]
    backend.set_chord_size(gid, 3)
    backend.add_chord_part(gid, ids[1], 1, "SUCCESS", 4)
    backend.add_chord_part(gid, ids[0], 0, "FAILURE", ValueError("bad"))
    joined = client.zrange(f"celery-taskset-meta-{gid}.j", 0, -1, withscores=True)
    failure = {"exc_type": "ValueError", "exc_message": ["bad"], "exc_module": "builtins"}
    assert joined == [
        (json.dumps([1, ids[0], "FAILURE", failure]).encode(), 0.0),
        (json.dumps([1, ids[1], "SUCCESS", 4]).encode(), 1.0),
    ]
    assert client.smembers(f"celery-taskset-meta-{gid}.d") == {
        f"{ids[0]}:0".encode(),
        f"{ids[1]}:1".encode(),
    }
