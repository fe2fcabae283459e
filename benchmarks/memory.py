"""Memory of 100,000 queued, unconsumed task messages: nbqueue's broker beside Celery's.

    python benchmarks/memory.py        # medians of 3 fresh processes per case

Each child publishes 100,000 no-op task messages (results not stored) to its in-process
broker and reports the growth of its resident set size per message.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import emit, run_matrix, table  # noqa: E402 - after the sys.path fix above

MESSAGES = 100_000


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _measure(send) -> dict:
    send(0)  # first-time costs outside the measurement
    gc.collect()
    before = _rss_bytes()
    for i in range(MESSAGES):
        send(i)
    gc.collect()
    grown = _rss_bytes() - before
    return {"bytes_per_message": grown / MESSAGES, "total_mb": grown / 2**20}


def run_nbqueue() -> dict:
    import nbqueue
    from benchmarks.tasks import noop

    app = nbqueue.App("memory", backend=None)
    task = app.task(noop, name="bench.noop", ignore_result=True)  # importable: JSON
    return _measure(task.delay)


def run_nbqueue_notebook_task() -> dict:
    import nbqueue

    app = nbqueue.App("memory", backend=None)

    def noop(i):  # a closure: travels as signed cloudpickle, like a notebook cell's task
        return i

    task = app.task(noop, name="bench.closure", ignore_result=True)
    return _measure(task.delay)


def run_celery() -> dict:
    from celery import Celery

    app = Celery("memory", broker="memory://")

    @app.task(name="bench.noop", ignore_result=True)
    def noop(i):
        return i

    return _measure(noop.delay)


SYSTEMS = {
    "nbqueue": run_nbqueue,
    "nbqueue-closure": run_nbqueue_notebook_task,
    "celery": run_celery,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(SYSTEMS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.run:
        emit(SYSTEMS[args.run]())
        return
    results = run_matrix(
        __file__, [(n, ["--run", n]) for n in SYSTEMS], repeats=1 if args.quick else 3
    )
    print()
    print(table(results, ["bytes_per_message", "total_mb"]))


if __name__ == "__main__":
    main()
