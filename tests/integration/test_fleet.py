"""A fleet on one machine: three ``nbqueue worker`` processes and one real ``celery worker``
on the same Redis share 20,000 importable tasks (acks_late, short visibility timeout); one
nbqueue process is SIGKILLed mid-run and nothing is lost.

The kill lands while a backlog waits, when nbqueue takes messages with a script that pops
and records them as unacked in one step. A consumer blocked in BRPOP on an *empty* queue
still has kombu's window (BRPOP pops, the record follows): a process killed in that
instant loses the message it was handed — kombu's Redis transport, Celery's too.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import nbqueue
from tests.helpers import wait_for
from tests.integration import fleet_app
from tests.integration.processes import (
    Spawner,
    WorkerProcess,
    celery_worker_command,
    nbqueue_worker_command,
)

pytestmark = [pytest.mark.slow, pytest.mark.celery, pytest.mark.timeout(480)]

N = 20_000
NB_NODES = ["nb1@fleet", "nb2@fleet", "nb3@fleet"]
CELERY_NODE = "cel@fleet"
#: seconds before a killed worker's unacked messages are handed to another worker
VISIBILITY = 5


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    with Spawner(tmp_path) as spawner:
        yield spawner


def _done(client: redis.Redis, keys: list[bytes]) -> dict[bytes, Any]:
    """The stored metas among `keys` (MGET in slices: one round trip per 5,000)."""
    found: dict[bytes, Any] = {}
    for start in range(0, len(keys), 5000):
        chunk = keys[start : start + 5000]
        for key, raw in zip(chunk, client.mget(chunk), strict=True):
            if raw is not None:
                found[key] = json.loads(raw)
    return found


def _broker_state(store: redis.Redis, keys: list[bytes]) -> str:
    """What is where, for a failure message."""
    return (
        f"{len(_done(store, keys))} results, {store.llen('celery')} waiting, "
        f"{store.hlen('unacked')} unacked ({store.zcard('unacked_index')} indexed)"
    )


def _held(client: Any, node: str) -> set[str]:
    """Ids of the tasks `node` is running or has reserved (unacked: it acks late)."""
    inspect = client.control.inspect(destination=[node], timeout=5)
    held = set()
    for reply in (inspect.active(), inspect.reserved()):
        held |= {task["id"] for task in (reply or {}).get(node, [])}
    return held


def test_three_nbqueue_workers_and_a_celery_worker_share_20000_tasks_and_lose_none(
    redis_url: str, spawn: Spawner
) -> None:
    client = nbqueue.App("fleet", broker=redis_url, backend=redis_url, result_expires=3600)
    store = redis.Redis.from_url(redis_url)
    try:
        square = client.task(name="fleet.square")(fleet_app.square.run)
        ids = [str(uuid.uuid4()) for _ in range(N)]
        keys = [client.backend.task_key(task_id).encode() for task_id in ids]
        started = time.monotonic()
        # the batch first, so a backlog waits when the kill lands (see the module docstring)
        result = nbqueue.group(square.s(i).set(task_id=t) for i, t in enumerate(ids)).apply_async()
        sent = time.monotonic() - started
        assert [r.id for r in result.results] == ids
        assert store.llen("celery") == N

        nb, celery = _start_fleet(spawn, redis_url)

        def all_answer() -> Any:
            for proc in [*nb.values(), celery]:
                assert proc.alive(), f"a worker exited:\n{proc.log()}"
            replies = client.control.inspect(timeout=1).ping() or {}
            return set(replies) == {*NB_NODES, CELERY_NODE} and replies

        replies = wait_for(all_answer, timeout=120, message="all four workers answering pings")
        assert replies == {node: {"ok": "pong"} for node in [*NB_NODES, CELERY_NODE]}

        tick = threading.Event()

        def results_present(at_least: int) -> bool:
            tick.wait(0.5)  # a poll interval: MGET of 20,000 keys is not free on 2 cores
            return len(_done(store, keys)) >= at_least

        wait_for(lambda: results_present(N // 4), timeout=180, message="a quarter of the results")
        held = wait_for(lambda: _held(client, "nb2@fleet"), timeout=60, message="nb2 busy")
        nb["nb2@fleet"].signal(signal.SIGKILL)
        killed_at = time.monotonic() - started
        assert nb["nb2@fleet"].wait(30) == -signal.SIGKILL
        try:
            wait_for(lambda: results_present(N), timeout=240, message="every result")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {_broker_state(store, keys)}") from None
        elapsed = time.monotonic() - started

        metas = _done(store, keys)
        assert len(metas) == N
        assert all(client.backend.task_key(task_id).encode() in metas for task_id in held)
        assert store.llen("celery") == 0
        # a late ack rides on its worker's next fetch: the last ones land within a poll
        wait_for(lambda: store.hlen("unacked") == 0, timeout=30, message="every ack landed")
        for i, key in enumerate(keys):
            assert metas[key]["status"] == "SUCCESS", metas[key]
            assert metas[key]["result"] == i * i
        # the survivors say who ran what: Celery's worker ran its share
        stats = client.control.inspect(timeout=5).stats()
        assert set(stats) == {"nb1@fleet", "nb3@fleet", CELERY_NODE}
        ran = {node: reply["total"].get("fleet.square", 0) for node, reply in stats.items()}
        assert ran[CELERY_NODE] > 0, ran
        print(
            f"\n{N} tasks: sent in {sent:.1f} s, nb2 killed at {killed_at:.1f} s holding "
            f"{len(held)}, all results at {elapsed:.1f} s; ran {ran}"
        )
        for node in ("nb1@fleet", "nb3@fleet"):
            assert nb[node].stop() == 0, nb[node].log()
        assert celery.stop() == 0, celery.log()
    finally:
        store.close()
        client.close()


def _start_fleet(spawn: Spawner, redis_url: str) -> tuple[dict[str, WorkerProcess], Any]:
    """Three ``nbqueue worker`` processes and one ``celery worker -P threads``."""
    env = {"NBQ_TEST_BROKER": redis_url, "NBQ_TEST_VISIBILITY": str(VISIBILITY)}
    nb = {
        node: spawn(
            node.split("@")[0],
            nbqueue_worker_command("tests.integration.fleet_app", "-n", node, "-c", "4"),
            env,
        )
        for node in NB_NODES
    }
    command = celery_worker_command(
        "tests.integration.fleet_celery", "-n", CELERY_NODE, "-P", "threads", "-c", "4"
    )
    return nb, spawn("celery", command, env)
