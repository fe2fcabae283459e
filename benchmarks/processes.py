"""The process pool beside the thread pool: CPU-bound work, and the cost per task.

    python benchmarks/processes.py            # 3 fresh processes per case, medians
    python benchmarks/processes.py --quick    # one round

Workloads: ``cpu`` = 8 tasks of pure-Python arithmetic (about 0.25 s each on one core),
first send to last result; ``noop`` = the in-process harness workload (no-op tasks,
throughput of a batch, then sequential round trips), smaller, to show what crossing to a
child costs per task. Also the time to start a worker (children included) and stop it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import Workload, emit, measure, run_matrix, table  # noqa: E402 - after the sys.path fix above

CPU_TASKS = 8
CPU_LOOPS = 3_000_000
NOOP = Workload(batch=1000, rounds=200, warmup=20)


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def run(pool: str, concurrency: int, workload: str) -> dict:
    import nbqueue

    app = nbqueue.App("bench")
    crunch = app.task(name="bench.burn")(burn)
    noop = app.task(name="bench.noop")(lambda i: i)
    started = time.perf_counter()
    worker = app.worker(pool=pool, concurrency=concurrency).start()
    start_s = time.perf_counter() - started
    try:
        if workload == "cpu":
            t0 = time.perf_counter()
            results = [crunch.delay(CPU_LOOPS) for _ in range(CPU_TASKS)]
            assert len({r.get(timeout=300) for r in results}) == 1
            elapsed = time.perf_counter() - t0
            figures = {"wall_s": elapsed, "tasks_per_s": CPU_TASKS / elapsed}
        else:
            figures = measure(noop.delay, lambda r: r.get(timeout=60), NOOP)
    finally:
        t0 = time.perf_counter()
        worker.stop()
        stop_s = time.perf_counter() - t0
    return {**figures, "start_s": start_s, "stop_s": stop_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=3, metavar=("POOL", "CONCURRENCY", "WORKLOAD"))
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    args = parser.parse_args()
    if args.run:
        logging.disable(logging.WARNING)
        pool, concurrency, workload = args.run
        emit(run(pool, int(concurrency), workload))
        return
    repeats = 1 if args.quick else 3
    cpu = run_matrix(
        __file__,
        [(f"{pool} c2 cpu", ["--run", pool, "2", "cpu"]) for pool in ("threads", "processes")],
        repeats=repeats,
    )
    noop = run_matrix(
        __file__,
        [(f"{pool} c1 noop", ["--run", pool, "1", "noop"]) for pool in ("threads", "processes")],
        repeats=repeats,
    )
    print()
    print(table(cpu, ["wall_s", "tasks_per_s", "start_s", "stop_s"]))
    print()
    print(table(noop, ["tasks_per_s", "p50_ms", "p99_ms", "start_s", "stop_s"]))


if __name__ == "__main__":
    main()
