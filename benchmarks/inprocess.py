"""In-process, in-memory transport: nbqueue beside Celery 5.7, Huey and Dramatiq.

    python benchmarks/inprocess.py            # every system, 3 fresh processes each, medians
    python benchmarks/inprocess.py --quick    # one round

Workload (same for every system): no-op tasks with results stored; throughput = first
send to last result for 5,000 tasks; latency = 500 sequential send-then-wait round trips
after a warm-up. Celery, Huey and Dramatiq get their best case ("tuned"): polling knobs cut
to 1 ms. Figures are reported as ratios against Celery and Huey, never asserted in tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import Workload, emit, measure, medians, run_matrix, table  # noqa: E402 - after the sys.path fix above

WORKLOAD = Workload(batch=5000, rounds=500, warmup=50)


def run_nbqueue(concurrency: int, events: bool = False) -> dict:
    """An importable task (travels as JSON, as Celery's does)."""
    import nbqueue
    from benchmarks.tasks import noop

    app = nbqueue.App("bench")
    task = app.task(noop, name="bench.noop")
    with app.worker(concurrency=concurrency, send_events=events):
        return measure(task.delay, lambda r: r.get(timeout=60), WORKLOAD)


def run_nbqueue_nb(concurrency: int, events: bool = False) -> dict:
    """A task defined in a notebook cell (travels as signed cloudpickle)."""
    import nbqueue

    app = nbqueue.App("bench")

    @app.task
    def noop(i):
        return i

    with app.worker(concurrency=concurrency, send_events=events):
        return measure(noop.delay, lambda r: r.get(timeout=60), WORKLOAD)


def run_celery(concurrency: int) -> dict:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("bench", broker="memory://", backend="cache+memory://")
    app.conf.broker_transport_options = {"polling_interval": 0.001}
    app.conf.worker_hijack_root_logger = False

    @app.task
    def noop(i):
        return i

    with start_worker(
        app, pool="threads", concurrency=concurrency, perform_ping_check=False, loglevel="ERROR"
    ):
        return measure(noop.delay, lambda r: r.get(timeout=60, interval=0.001), WORKLOAD)


def run_huey(concurrency: int) -> dict:
    from huey import MemoryHuey

    huey = MemoryHuey("bench", utc=True)

    @huey.task()
    def noop(i):
        return i

    consumer = huey.create_consumer(
        workers=concurrency,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        backoff=1.0,
        max_delay=0.001,
    )
    consumer.start()
    try:
        return measure(
            noop, lambda r: r.get(blocking=True, timeout=60, backoff=1.0, max_delay=0.001), WORKLOAD
        )
    finally:
        consumer.stop(graceful=True)


def run_dramatiq(concurrency: int) -> dict:
    import dramatiq
    import dramatiq.results.backend as results_backend
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.results import Results
    from dramatiq.results.backends.stub import StubBackend

    results_backend.BACKOFF_FACTOR = 1  # tuned: first poll after ~1 ms, not 100 ms
    broker = StubBroker()
    broker.add_middleware(Results(backend=StubBackend()))
    dramatiq.set_broker(broker)

    @dramatiq.actor(store_results=True)
    def noop(i):
        return i

    worker = dramatiq.Worker(broker, worker_threads=concurrency, worker_timeout=1)
    worker.start()
    try:
        return measure(noop.send, lambda m: m.get_result(block=True, timeout=60_000), WORKLOAD)
    finally:
        worker.stop()


SYSTEMS = {
    "nbqueue": run_nbqueue,
    "nbqueue-nb": run_nbqueue_nb,
    "celery": run_celery,
    "huey": run_huey,
    "dramatiq": run_dramatiq,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(SYSTEMS), help="(child) run one case")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--events", action="store_true", help="nbqueue with task events on")
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    if args.run:
        logging.disable(logging.WARNING)
        kwargs = {"events": True} if args.events else {}
        emit(SYSTEMS[args.run](args.concurrency, **kwargs))
        return
    cases = [
        (f"{name} c{c}", ["--run", name, "--concurrency", str(c)])
        for c in (1, 4)
        for name in args.systems.split(",")
    ]
    results = run_matrix(__file__, cases, repeats=1 if args.quick else 3)
    print()
    print(table(results, ["tasks_per_s", "p50_ms", "p99_ms"]))
    print()
    for c in (1, 4):
        ours = medians(results.get(f"nbqueue c{c}", []))
        for peer in ("celery", "huey", "dramatiq"):
            theirs = medians(results.get(f"{peer} c{c}", []))
            if ours and theirs:
                speed = ours["tasks_per_s"] / theirs["tasks_per_s"]
                latency = ours["p50_ms"] / theirs["p50_ms"]
                print(f"c{c}: nbqueue / {peer}: throughput ×{speed:.2f}, p50 ×{latency:.2f}")


if __name__ == "__main__":
    main()
