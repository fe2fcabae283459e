"""Redis on loopback: nbqueue beside Celery 5.7, Huey, Dramatiq and the raw kombu floor.

    python benchmarks/redis.py              # every case, 3 fresh processes each, medians
    python benchmarks/redis.py --quick      # one round
    python benchmarks/redis.py --commands   # Redis commands per task (MONITOR), nbqueue vs Celery

Workload (every system): no-op tasks with results stored in Redis; throughput = first send
to last result for 5,000 tasks; latency = 500 sequential send-then-wait round trips after a
warm-up. Cases:

* ``nbqueue c1/c4``          in-process worker threads (broker db A, results db B)
* ``nbqueue-proc c1/c4``     a separate ``nbqueue worker`` process (threads), the client here
* ``celery threads c1/c4``   Celery's ``start_worker`` in a thread (threads pool)
* ``celery proc threads c4`` / ``celery proc prefork c2``   a separate ``celery worker``
* ``huey c1/c4``             RedisHuey, consumer threads in-process, result waits tuned to 1 ms
* ``huey-proc c1/c4``        a separate ``huey_consumer`` process (threads), the client here
* ``dramatiq c1/c4``         RedisBroker + Redis results, worker threads in-process
* ``kombu floor``            kombu publish + get + ack on the same Redis (no worker, no results)

The Redis server is shared: the databases named by ``--dbs`` (default 4,5) are flushed.
"""

from __future__ import annotations

import os
import sys

# run as a script, this file's folder comes first on sys.path, where "redis" would be this
# module itself: put the repository root there instead
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402 - after the sys.path fix above
import collections  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks._harness import (  # noqa: E402 - after the sys.path fix above
    REDIS_BACKEND,
    REDIS_BROKER,
    REDIS_DBS,
    REDIS_SERVER,
    Workload,
    emit,
    flush_redis_dbs,
    measure,
    medians,
    run_matrix,
    table,
)
from benchmarks.tasks import noop  # noqa: E402

WORKLOAD = Workload(batch=5000, rounds=500, warmup=50)
_ROOT = os.path.dirname(_HERE)


def _get(handle: Any) -> Any:
    """Wait for an nbqueue or Celery result."""
    return handle.get(timeout=60)


def _nb_app() -> Any:
    import nbqueue

    app = nbqueue.App("bench", broker=REDIS_BROKER, backend=REDIS_BACKEND)
    app.task(name="bench.noop", serializer="json")(noop)
    return app


def run_nbqueue(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    app = _nb_app()
    with app.worker(concurrency=concurrency):
        result = measure(app.tasks["bench.noop"].delay, _get, workload)
    app.close()
    return result


def _child_env(marker: str) -> dict[str, str]:
    """The environment of a worker process on the benchmark's Redis, importing this module
    with `marker` set (which builds the app it needs at import)."""
    env = dict(os.environ, BENCH_REDIS=REDIS_SERVER, BENCH_REDIS_DBS=",".join(map(str, REDIS_DBS)))
    env[marker] = "1"
    return env


def _measure_beside(
    command: list[str], marker: str, send: Any, wait: Any, workload: Workload, **popen: Any
) -> dict:
    """Measure against a worker process (`command`; see `_child_env` for `marker`) once
    it has run one task, then stop it (SIGTERM, killed after 30 s)."""
    worker = subprocess.Popen(command, env=_child_env(marker), cwd=_ROOT, **popen)
    try:
        wait(send(0))  # the worker is up
        return measure(send, wait, workload)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def run_nbqueue_process(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    """The scale-out shape: ``nbqueue worker`` in its own process, the client here."""
    app = _nb_app()
    command = [sys.executable, "-m", "nbqueue", "worker", "-A", "benchmarks.redis:nb_app"]
    command += ["-c", str(concurrency), "-l", "ERROR"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    try:
        send = app.tasks["bench.noop"].delay
        return _measure_beside(command, "BENCH_NB_APP", send, _get, workload)
    finally:
        app.close()


def _celery_app() -> Any:
    from celery import Celery

    app = Celery("bench", broker=REDIS_BROKER, backend=REDIS_BACKEND)
    app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
    app.task(name="bench.noop")(noop)
    return app


def run_celery(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    from celery.contrib.testing.worker import start_worker

    app = _celery_app()
    task = app.tasks["bench.noop"]
    with start_worker(
        app, pool="threads", concurrency=concurrency, perform_ping_check=False, loglevel="ERROR"
    ):
        return measure(task.delay, _get, workload)


def run_celery_process(concurrency: int, pool: str, workload: Workload = WORKLOAD) -> dict:
    """``celery worker`` in its own process, on the app `benchmarks.redis:celery_app`."""
    send = _celery_app().tasks["bench.noop"].delay
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.redis:celery_app", "worker"]
    command += ["-P", pool, "-c", str(concurrency), "-l", "ERROR"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    return _measure_beside(
        command, "BENCH_CELERY_APP", send, _get, workload, stdout=subprocess.DEVNULL
    )


def _huey() -> Any:
    from huey import RedisHuey

    return RedisHuey("bench", url=REDIS_BROKER, utc=True)


def _huey_get(handle: Any) -> Any:
    return handle.get(blocking=True, timeout=60, backoff=1.0, max_delay=0.001)


def run_huey(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    huey = _huey()
    task = huey.task()(noop)
    consumer = huey.create_consumer(
        workers=concurrency, worker_type="thread", periodic=False, initial_delay=0.001
    )
    consumer.start()
    try:
        return measure(task, _huey_get, workload)
    finally:
        consumer.stop(graceful=True)


def run_huey_process(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    """``huey_consumer`` (threads) in its own process, the client here."""
    task = _huey().task(name="bench.noop")(noop)
    command = [sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.redis.huey_app"]
    command += ["-k", "thread", "-w", str(concurrency), "-n", "-d", "0.001", "-q"]
    return _measure_beside(command, "BENCH_HUEY_APP", task, _huey_get, workload)


def run_dramatiq(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends.redis import RedisBackend

    broker = RedisBroker(url=REDIS_BROKER)
    broker.add_middleware(Results(backend=RedisBackend(url=REDIS_BACKEND)))
    dramatiq.set_broker(broker)
    actor = dramatiq.actor(store_results=True)(noop)
    worker = dramatiq.Worker(broker, worker_threads=concurrency, worker_timeout=100)
    worker.start()
    try:
        return measure(actor.send, lambda m: m.get_result(block=True, timeout=60_000), workload)
    finally:
        worker.stop()
        broker.close()


def run_floor(concurrency: int, workload: Workload = WORKLOAD) -> dict:
    """kombu's own Redis transport: publish, then get and ack, nothing else."""
    from kombu import Connection

    with Connection(REDIS_BROKER) as conn:
        queue = conn.SimpleQueue("floor")

        def take(_: Any) -> None:
            queue.get(block=True, timeout=60).ack()

        result = measure(queue.put, take, workload)
        queue.close()
    return result


SYSTEMS = {
    "nbqueue": run_nbqueue,
    "nbqueue-proc": run_nbqueue_process,
    "celery": run_celery,
    "celery-threads-proc": lambda c, w=WORKLOAD: run_celery_process(c, "threads", w),
    "celery-prefork-proc": lambda c, w=WORKLOAD: run_celery_process(c, "prefork", w),
    "huey": run_huey,
    "huey-proc": run_huey_process,
    "dramatiq": run_dramatiq,
    "floor": run_floor,
}


def _cases(systems: list[str]) -> list[tuple[str, list[str]]]:
    cases = []
    for name in systems:
        if name == "celery-threads-proc":
            levels = [4]
        elif name == "celery-prefork-proc":
            levels = [2]
        elif name == "floor":
            levels = [1]
        else:
            levels = [1, 4]
        cases += [(f"{name} c{c}", ["--run", name, "--concurrency", str(c)]) for c in levels]
    return cases


# round trips: Redis commands per task, counted with MONITOR -------------------------------
def count_commands(system: str, tasks: int = 1000) -> dict:
    """Commands the whole system sends per task (client and worker, Lua excluded), by name.

    Counted with MONITOR on the benchmark's databases over `tasks` tasks (sent as a batch,
    then waited for) and one round trip; start-up commands are amortised over them.
    """
    import redis

    counts: collections.Counter[str] = collections.Counter()
    ready = threading.Event()
    watcher = redis.Redis.from_url(f"{REDIS_SERVER}/0")

    def monitor() -> None:
        with watcher.monitor() as feed:
            ready.set()
            for entry in feed.listen():
                name = entry["command"].split(" ", 1)[0].upper()
                if name == "ECHO" and "bench-stop" in entry["command"]:
                    return
                if entry["db"] in REDIS_DBS and entry["client_type"] != "lua":
                    counts[name] += 1

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        SYSTEMS[system](1, Workload(batch=tasks, rounds=1, warmup=0))
    finally:
        redis.Redis.from_url(REDIS_BROKER).echo("bench-stop")
        thread.join(30)
    per_task = {name: round(n / (tasks + 1), 2) for name, n in counts.most_common()}
    per_task["TOTAL"] = round(sum(counts.values()) / (tasks + 1), 2)
    return per_task


def _report(results: dict[str, list[dict]]) -> None:
    print()
    print(table(results, ["tasks_per_s", "p50_ms", "p99_ms"]))
    print()
    floor = medians(results.get("floor c1", []))
    celery_best = max(
        (
            medians(runs)["tasks_per_s"]
            for label, runs in results.items()
            if "celery" in label and runs
        ),
        default=None,
    )
    # like with like: the in-process cases together, the worker-process cases together
    for system, peers in (
        ("nbqueue", ("celery", "huey", "dramatiq")),
        ("nbqueue-proc", ("huey-proc",)),
    ):
        for c in (1, 4):
            _compare(results, f"{system} c{c}", [f"{p} c{c}" for p in peers], celery_best, floor)


def _compare(
    results: dict[str, list[dict]], ours: str, peers: list[str], celery_best: Any, floor: Any
) -> None:
    """Print `ours` beside Celery's best, each of `peers`, and the kombu floor."""
    mine = medians(results.get(ours, []))
    if not mine:
        return
    if celery_best:
        print(f"{ours} / Celery's best: throughput ×{mine['tasks_per_s'] / celery_best:.2f}")
    for peer in peers:
        theirs = medians(results.get(peer, []))
        if theirs:
            speed = mine["tasks_per_s"] / theirs["tasks_per_s"]
            latency = mine["p50_ms"] / theirs["p50_ms"]
            print(f"{ours} / {peer}: throughput ×{speed:.2f}, p50 ×{latency:.2f}")
    if floor:
        print(f"{ours} p50 / kombu floor p50: ×{mine['p50_ms'] / floor['p50_ms']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(SYSTEMS), help="(child) run one case")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--commands", action="store_true", help="Redis commands per task")
    parser.add_argument("--count", choices=sorted(SYSTEMS), help="(child) count commands")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.run or args.count:
        flush_redis_dbs()
        emit(count_commands(args.count) if args.count else SYSTEMS[args.run](args.concurrency))
        return
    if args.commands:
        cases = [(name, ["--count", name]) for name in ("nbqueue", "celery", "floor")]
        for label, runs in run_matrix(__file__, cases, repeats=1).items():
            print(f"{label}: {runs[0] if runs else 'failed'}")
        return
    results = run_matrix(__file__, _cases(args.systems.split(",")), repeats=1 if args.quick else 3)
    _report(results)


celery_app = _celery_app() if os.environ.get("BENCH_CELERY_APP") else None
nb_app = _nb_app() if os.environ.get("BENCH_NB_APP") else None
huey_app = _huey() if os.environ.get("BENCH_HUEY_APP") else None
if huey_app is not None:
    huey_app.task(name="bench.noop")(noop)


if __name__ == "__main__":
    main()
