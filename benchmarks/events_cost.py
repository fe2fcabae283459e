"""What events cost: task throughput with task events off, on, listened to, and monitored.

    python benchmarks/events_cost.py              # 5 rounds per case, fresh processes, medians
    python benchmarks/events_cost.py --rounds 9   # steadier medians on a busy machine
    python benchmarks/events_cost.py --quick      # 1 round
    python benchmarks/events_cost.py --idle 60    # what an idle worker sends in 60 s
    python benchmarks/events_cost.py --broker redis   # on Redis (BENCH_REDIS, dbs 4,5)

Throughput = first send to last result for 5,000 no-op tasks on the in-process broker,
concurrency 4 (the harness of ``inprocess.py``); ``cpu_us_per_task`` = process CPU time
over the same span, which is steadier than wall time on a busy machine. Cases:

* ``off``: task events off (heartbeats only);
* ``on``: task events on, nobody listening (on the in-process broker they are not even
  built: nobody is bound to hear them);
* ``on+bound``: a queue bound to ``celeryev`` with ``#`` (a monitor in another process):
  every event is encoded and delivered, nobody in this process reads them (with
  ``--broker redis`` the listener is a receiver in another process instead);
* ``on+monitor``: an `EventReceiver` feeding a `State` in this same process: dispatch
  *and* receive.

With ``--broker redis`` the tasks and results go through Redis (``BENCH_REDIS``, default
``redis://127.0.0.1:6379``; databases ``BENCH_REDIS_DBS``, default 4,5, flushed) and the
events exchange is Redis pub/sub, where every event is encoded and published whether or
not anyone subscribed; ``on+bound`` there is ``on+remote``: an `EventReceiver` feeding a
`State` in *another* process (what a monitor or ``nbqueue events`` is), so this process
pays for dispatch alone while the events are really listened to.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import (  # noqa: E402 - after the sys.path fix above
    REDIS_BACKEND,
    REDIS_BROKER,
    Workload,
    emit,
    flush_redis_dbs,
    medians,
    run_matrix,
    table,
)
from benchmarks.tasks import noop  # noqa: E402

WORKLOAD = Workload(batch=5000, rounds=0, warmup=50)


def _app(broker: str) -> Any:
    import nbqueue

    if broker == "memory":
        return nbqueue.App("bench")
    flush_redis_dbs()
    return nbqueue.App("bench", broker=REDIS_BROKER, backend=REDIS_BACKEND)


def _remote_listener(broker: str) -> subprocess.Popen:
    """``--listen`` in a child process; returns once its receiver is consuming."""
    command = [sys.executable, os.path.abspath(__file__), "--listen", "--broker", broker]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        child.kill()
        raise RuntimeError("the remote listener did not start")
    return child


def listen() -> None:
    """(child) Receive every Redis event into a `State` until stdin closes; print the count."""
    import nbqueue

    app = nbqueue.App("bench", broker=REDIS_BROKER, backend=REDIS_BACKEND)
    state = app.events.State()
    with app.events.Receiver(handlers={"*": state.event}):
        print("ready", flush=True)
        sys.stdin.read()
    print(state.event_count, flush=True)
    app.close()


def _task(app: Any, broker: str) -> Any:
    """The no-op task: as before in-process; importable-style JSON on Redis."""
    if broker != "memory":
        return app.task(name="bench.noop", serializer="json")(noop)

    @app.task
    def task(i):
        return i

    return task


def run_case(events: bool, listener: str | None, broker: str, concurrency: int = 4) -> dict:
    from kombu import Queue

    from nbqueue.events import event_exchange

    app = _app(broker)
    task = _task(app, broker)
    state = app.events.State()
    receiver = app.events.Receiver(handlers={"*": state.event}) if listener == "monitor" else None
    conn = app.connection()
    bound = Queue("bench-listener", event_exchange(conn), routing_key="#")
    remote = None
    if listener == "bound" and broker == "memory":
        bound(conn.default_channel).declare()
    elif listener == "bound":
        remote = _remote_listener(broker)
    with app.worker(concurrency=concurrency, send_events=events) as worker:
        if receiver is not None:
            receiver.start()
        for i in range(WORKLOAD.warmup):
            task.delay(i).get(timeout=60)
        cpu, start = time.process_time(), time.perf_counter()
        handles = [task.delay(i) for i in range(WORKLOAD.batch)]
        for handle in handles:
            handle.get(timeout=60)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        info = worker.steps["events"].info()
    if receiver is not None:
        receiver.stop()
    delivered = 0
    if remote is not None:
        out, _ = remote.communicate("", timeout=60)  # stdin closed: it prints its count
        delivered = int(out.split()[-1])
    elif listener == "bound":
        delivered = bound(conn.default_channel).queue_declare(passive=True).message_count
        bound(conn.default_channel).delete()
    conn.release()
    app.close()
    return {
        "tasks_per_s": WORKLOAD.batch / elapsed,
        "cpu_us_per_task": cpu / WORKLOAD.batch * 1e6,
        "events_sent": info.get("sent", 0),
        "events_unrouted": info.get("unrouted", 0),
        "events_seen": state.event_count,
        "messages_to_listener": delivered,
    }


def run_idle(seconds: float, interval: float) -> None:
    """Count every message an idle worker publishes on the events exchange and to queues."""
    import nbqueue

    app = nbqueue.App("idle")
    counts: collections.Counter[str] = collections.Counter()
    receiver = app.events.Receiver(handlers={"*": lambda e: counts.update([e["type"]])})
    with app.worker(concurrency=1, heartbeat_interval=interval), receiver:
        counts.clear()  # what the wakeup and start-up sent is not idling
        space = app.broker.space
        before = dict(space.sizes())
        threading.Event().wait(seconds)  # a benchmark, not a test: this is the idle minute
        after = dict(space.sizes())
    app.close()
    print(f"idle {seconds:.0f} s, heartbeat interval {interval} s:")
    for kind, n in sorted(counts.items()):
        print(f"  {kind:<18} {n:>5}  ({n / seconds:.2f}/s)")
    print(f"  queue sizes before {before} after {after}")


CASES = {
    "off": (False, None),
    "on": (True, None),
    "on+bound": (True, "bound"),
    "on+monitor": (True, "monitor"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(CASES), help="(child) run one case")
    parser.add_argument("--quick", action="store_true", help="one round instead of five")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (fresh processes)")
    parser.add_argument("--idle", type=float, metavar="SECONDS", help="measure an idle worker")
    parser.add_argument("--interval", type=float, default=2.0, help="heartbeat interval (idle)")
    parser.add_argument("--broker", choices=("memory", "redis"), default="memory")
    parser.add_argument("--listen", action="store_true", help="(child) a remote listener")
    args = parser.parse_args()
    if args.idle:
        run_idle(args.idle, args.interval)
        return
    if args.listen:
        logging.disable(logging.WARNING)
        listen()
        return
    if args.run:
        logging.disable(logging.WARNING)
        emit(run_case(*CASES[args.run], broker=args.broker))
        return
    cases = [(f"events {name}", ["--run", name, "--broker", args.broker]) for name in CASES]
    results = run_matrix(__file__, cases, repeats=1 if args.quick else args.rounds)
    print()
    columns = ["tasks_per_s", "cpu_us_per_task", "events_sent", "events_unrouted", "events_seen"]
    print(table(results, columns))
    print()
    off = medians(results.get("events off", []))
    for name in ("on", "on+bound", "on+monitor"):
        on = medians(results.get(f"events {name}", []))
        if off and on:
            print(
                f"events {name} / off: throughput ×{on['tasks_per_s'] / off['tasks_per_s']:.3f}, "
                f"CPU per task ×{on['cpu_us_per_task'] / off['cpu_us_per_task']:.3f}"
            )


if __name__ == "__main__":
    main()
