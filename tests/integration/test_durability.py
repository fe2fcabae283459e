"""Nothing is lost when worker processes die or stop: real ``nbqueue worker`` processes on Redis.

* SIGKILL in the middle of an ``acks_late`` task: the message stays in Redis's unacked set,
  invisible, until the visibility timeout; then it is restored marked ``redelivered`` and
  another worker process completes it.
* SIGTERM (warm shutdown): reserved and ETA-held messages go back at once, long before the
  visibility timeout, while the task that is running is allowed to finish.
* The in-process transport mirrors both (unacked set, visibility timeout, restore).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import nbqueue
from tests.helpers import wait_for
from tests.integration import durable_tasks


def _env(redis_url: str, visibility: float) -> dict[str, str]:
    return {
        "NBQ_TEST_BROKER": redis_url,
        "NBQ_TEST_BACKEND": redis_url,
        "NBQ_TEST_VISIBILITY": str(visibility),
    }


def _runs(log_dir: Path) -> list[dict[str, Any]]:
    path = log_dir / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.mark.slow
def test_a_worker_killed_mid_task_loses_nothing_the_message_comes_back_after_the_visibility_timeout(
    durable_worker, redis_url, tmp_path
):
    env = _env(redis_url, visibility=3)
    victim = durable_worker("victim", env, "-c", "1")
    victim.wait_ready()
    client = durable_tasks.make_app(redis_url, redis_url, visibility=3)
    raw = _raw(redis_url)
    try:
        result = client.send_task("durable.hold", (str(tmp_path), "job"))
        wait_for(lambda: _runs(tmp_path), timeout=30, message="the victim to start the task")
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        killed_at = time.time()

        # nothing acked, nothing requeued: the message waits, invisible, in the unacked set
        assert raw.llen("celery") == 0
        assert raw.hlen("unacked") == 1
        (tag,) = raw.hkeys("unacked")
        delivered_at = raw.zscore("unacked_index", tag)
        assert delivered_at <= killed_at

        (tmp_path / "release").touch()  # the second run returns at once
        rescuer = durable_worker("rescuer", env, "-c", "1")
        rescuer.wait_ready()
        assert result.get(timeout=60) == {"pid": rescuer.pid, "redelivered": True}
    finally:
        client.close()

    first, second = _runs(tmp_path)
    assert (first["pid"], first["redelivered"]) == (victim.pid, False)
    assert (second["pid"], second["redelivered"]) == (rescuer.pid, True)
    assert first["id"] == second["id"] == result.id
    assert second["time"] >= delivered_at + 3  # not before the visibility timeout
    wait_for(lambda: raw.hlen("unacked") == 0, timeout=30, message="the redelivery to be acked")
    assert raw.llen("celery") == 0
    rescuer.proc.send_signal(signal.SIGTERM)
    assert rescuer.proc.wait(timeout=60) == 0, rescuer.output()


@pytest.mark.slow
def test_warm_shutdown_returns_reserved_and_eta_messages_at_once_not_after_the_visibility_timeout(
    durable_worker, redis_url, tmp_path
):
    env = _env(redis_url, visibility=3600)  # only the immediate return can pass this test
    first = durable_worker("first", env, "-c", "1", "--prefetch-multiplier", "4")
    first.wait_ready()
    client = durable_tasks.make_app(redis_url, redis_url)
    raw = _raw(redis_url)
    try:
        running = client.send_task("durable.hold", (str(tmp_path), "running"))
        later = client.send_task("durable.note", (str(tmp_path), "eta"), countdown=3600)
        reserved = [client.send_task("durable.note", (str(tmp_path), f"r{i}")) for i in range(3)]
        wait_for(
            lambda: raw.hlen("unacked") == 5 and raw.llen("celery") == 0,
            timeout=30,
            message="the first worker to hold all five messages",
        )
        assert [r["tag"] for r in _runs(tmp_path)] == ["running"]
        second = durable_worker("second", env, "-c", "1", "--prefetch-multiplier", "4")
        second.wait_ready()
        eta_tag = _tag_of(raw, later.id)  # kept when the message is restored

        stopped_at = time.time()
        first.proc.send_signal(signal.SIGTERM)
        done = [r.get(timeout=30) for r in reserved]
        # the reserved ones ran on the second worker, while the first still finishes its task
        assert first.proc.poll() is None, first.output()
        assert done == [{"pid": second.pid, "redelivered": True}] * 3
        # the ETA message went back too: the second worker now holds it (a new delivery)
        wait_for(
            lambda: (raw.zscore("unacked_index", eta_tag) or 0) >= stopped_at,
            timeout=30,
            message="the second worker to take the ETA message",
        )

        (tmp_path / "release").touch()
        assert running.get(timeout=60) == {"pid": first.pid, "redelivered": False}
        assert first.proc.wait(timeout=60) == 0, first.output()
        assert "returned 4 unstarted message(s)" in first.output()
        assert "eta" not in [r["tag"] for r in _runs(tmp_path)]
    finally:
        client.close()
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=60) == 0, second.output()
    (waiting,) = raw.lrange("celery", 0, -1)  # the ETA message, back in the queue again
    assert later.id.encode() in waiting
    assert raw.hlen("unacked") == 0


def _tag_of(raw: redis.Redis, task_id: str) -> bytes:
    """The delivery tag of the unacked message carrying `task_id`."""
    for tag, record in raw.hgetall("unacked").items():
        if task_id.encode() in record:
            return tag
    raise AssertionError(f"{task_id} is not unacked")


def test_the_in_process_transport_restores_an_unacked_message_after_its_visibility_timeout():
    """The same semantics without a server: the first worker's task never acks (stuck, as
    if its process had died); after the visibility timeout, and not before, the message is
    restored marked redelivered and another worker completes it."""
    app = nbqueue.App(
        "mirror",
        task_acks_late=True,
        broker_transport_options={"visibility_timeout": 0.5},
    )
    stuck = threading.Event()
    runs: list[tuple[str, bool, float]] = []

    @app.task(bind=True)
    def job(self):
        redelivered = self.request.delivery_info["redelivered"]
        runs.append((threading.current_thread().name, redelivered, time.monotonic()))
        if not redelivered:
            stuck.wait(30)
        return "done"

    space = app.broker.space
    try:
        with app.worker(concurrency=1, prefetch_multiplier=1, hostname="first") as first:
            result = job.delay()
            wait_for(lambda: runs, timeout=10, message="the first run")
            ((delivered_at, _),) = space.unacked.values()
            assert space.sizes()["celery"] == 0  # taken, not acked: invisible to others
            with app.worker(concurrency=1, hostname="second"):
                assert result.get(timeout=10) == "done"
                stuck.set()
                first.drain(10)
    finally:
        stuck.set()
        app.close()
    (one, one_redelivered, _), (two, two_redelivered, restarted_at) = runs
    assert (one.startswith("nbqueue-first-"), one_redelivered) == (True, False)
    assert (two.startswith("nbqueue-second-"), two_redelivered) == (True, True)
    assert restarted_at - delivered_at >= 0.5
    assert not space.unacked and space.sizes()["celery"] == 0
