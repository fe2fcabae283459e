"""Start an in-process worker, run one task, stop it: nbqueue beside Celery, Huey, Dramatiq.

    python benchmarks/lifecycle.py          # medians of 3 fresh processes per system

Each child process imports its library first (not timed), then times start → one task's
result → stop: the first cycle alone (`first_s`, one-time costs included), then the median
of five more (`seconds`).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import emit, run_matrix, table  # noqa: E402 - after the sys.path fix above

REPEATS = 5


def _timed(cycle) -> dict:
    started = time.perf_counter()
    cycle()  # the first cycle pays one-time costs (lazy imports, caches): reported apart
    first = time.perf_counter() - started
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        cycle()
        samples.append(time.perf_counter() - started)
    return {"first_s": first, "seconds": statistics.median(samples)}


def run_nbqueue() -> dict:
    import nbqueue

    app = nbqueue.App("lifecycle")

    @app.task
    def one():
        return 1

    def cycle():
        with app.worker(concurrency=1):
            assert one.delay().get(timeout=30) == 1

    return _timed(cycle)


def run_celery() -> dict:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("lifecycle", broker="memory://", backend="cache+memory://")
    app.conf.broker_transport_options = {"polling_interval": 0.001}

    @app.task
    def one():
        return 1

    def cycle():
        with start_worker(
            app,
            pool="threads",
            concurrency=1,
            perform_ping_check=False,
            loglevel="ERROR",
            shutdown_timeout=30,
        ):
            assert one.delay().get(timeout=30, interval=0.001) == 1

    return _timed(cycle)


def run_huey() -> dict:
    from huey import MemoryHuey

    huey = MemoryHuey("lifecycle")

    @huey.task()
    def one():
        return 1

    def cycle():
        consumer = huey.create_consumer(
            workers=1,
            worker_type="thread",
            periodic=False,
            initial_delay=0.001,
            backoff=1.0,
            max_delay=0.001,
        )
        consumer.start()
        try:
            assert one().get(blocking=True, timeout=30, backoff=1.0, max_delay=0.001) == 1
        finally:
            consumer.stop(graceful=True)

    return _timed(cycle)


def run_dramatiq() -> dict:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.results import Results
    from dramatiq.results.backends.stub import StubBackend

    broker = StubBroker()
    broker.add_middleware(Results(backend=StubBackend()))
    dramatiq.set_broker(broker)

    @dramatiq.actor(store_results=True)
    def one():
        return 1

    def cycle():
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=1)
        worker.start()
        try:
            assert one.send().get_result(block=True, timeout=30_000) == 1
        finally:
            worker.stop()

    return _timed(cycle)


SYSTEMS = {"nbqueue": run_nbqueue, "celery": run_celery, "huey": run_huey, "dramatiq": run_dramatiq}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(SYSTEMS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.run:
        logging.disable(logging.WARNING)
        emit(SYSTEMS[args.run]())
        return
    cases = [(name, ["--run", name]) for name in SYSTEMS]
    results = run_matrix(__file__, cases, repeats=1 if args.quick else 3)
    print()
    print(table(results, ["first_s", "seconds"]))


if __name__ == "__main__":
    main()
