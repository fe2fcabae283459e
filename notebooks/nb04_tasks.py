"""Tasks for notebook 4 (acks and redelivery), importable so an ``nbqueue worker`` process
runs them: ``python -m nbqueue worker -A nb04_tasks:app -Q nb04``.

The app acks late and has a 2-second visibility timeout: a message a worker took and never
acknowledged goes back to the queue once a living consumer's sweep finds it that old.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import nbqueue

REDIS_URL = os.environ.get("NBQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "nb04"
VISIBILITY_TIMEOUT = 2.0  # seconds; kombu's default is an hour

app = nbqueue.App(
    "nb04",
    broker=REDIS_URL,
    backend=REDIS_URL,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_throttle": 1,  # sweep on every idle poll (kombu: every 10th)
        "unacked_mutex_expire": 5,  # a sweeper killed holding the sweep lock blocks 5 s, not 300
    },
)


def reset(account: str) -> None:
    """Start clean: empty the queue, forget deliveries an earlier run of the notebook left
    unacknowledged (a kernel stopped before the rescue), and drop `account`'s keys."""
    with app.connection() as connection:
        connection.default_channel.queue_purge(QUEUE)
    redis = app.backend.client
    redis.delete(gate_key(account), f"nb04:naive:{account}", f"nb04:ledger:{account}")
    for tag, raw in redis.hgetall("unacked").items():
        if json.loads(raw)[2] == QUEUE:  # [envelope, exchange, routing key]
            redis.hdel("unacked", tag)
            redis.zrem("unacked_index", tag)


def gate_key(account: str) -> str:
    """The key the notebook sets to let a `deposit` for `account` finish."""
    return f"nb04:gate:{account}"


@app.task(bind=True, name="nb04.deposit")
def deposit(self: Any, account: str, amount: int) -> dict[str, Any]:
    """Credit `account` twice over (a naive counter, an idempotent ledger) and record the
    run, then do the slow part of the job: wait for the notebook's gate (at most 60 s)."""
    redis = app.backend.client
    run = {
        "pid": os.getpid(),
        "hostname": self.request.hostname,
        "redelivered": bool(self.request.delivery_info.get("redelivered")),
    }
    with redis.pipeline() as step:  # one transaction: the notebook sees all three or none
        step.incrby(f"nb04:naive:{account}", amount)  # runs twice, counts twice
        step.hset(f"nb04:ledger:{account}", self.request.id, amount)  # keyed by the task id
        step.rpush(f"nb04:runs:{self.request.id}", json.dumps(run))
        step.execute()
    deadline = time.monotonic() + 60
    while not redis.exists(gate_key(account)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate for {account!r} never opened")
        time.sleep(0.05)
    return run
