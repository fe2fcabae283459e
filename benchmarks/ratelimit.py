"""A rate-limited task type must not slow the others: nbqueue beside Celery 5.7, in-process.

    python benchmarks/ratelimit.py            # 3 fresh processes per case, medians
    python benchmarks/ratelimit.py --quick    # one round

Workload: one group of 10,000 no-op tasks sent at once, in-memory broker, 4 threads,
default prefetch (4 per thread). Every 10th task is of type ``limited`` with
``rate_limit="100/s"``; the other 9,000 are of type ``free``. Reported:

* ``free_per_s``: the free tasks' throughput (first send to last free task done), in the
  mixed group and in a group of the 9,000 free tasks alone (``alone``);
* mixed / alone throughput of the free tasks (1.00 = not slowed at all);
* ``limited_per_s``: the rate the limited tasks actually ran at (limit: 100/s).

Completion is observed inside the task functions (both systems run in this process), so
no result backend is involved. Figures are reported, never asserted in tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import emit, medians, run_matrix, table  # noqa: E402 - after the sys.path fix above

TOTAL = 10_000
EVERY = 10  # every 10th task is rate-limited
RATE = "100/s"
CONCURRENCY = 4


class Tally:
    """When tasks of each type finished; wakes the waiter when all of them did."""

    def __init__(self, free: int, limited: int) -> None:
        self.expected = {"free": free, "limited": limited}
        self.done: dict[str, list[float]] = {"free": [], "limited": []}
        self.all_done = threading.Event()
        self._lock = threading.Lock()

    def hit(self, kind: str) -> None:
        with self._lock:
            self.done[kind].append(time.perf_counter())
            if all(len(self.done[k]) >= n for k, n in self.expected.items()):
                self.all_done.set()


def plan(mixed: bool) -> list[str]:
    if not mixed:
        return ["free"] * (TOTAL - TOTAL // EVERY)
    return ["limited" if i % EVERY == EVERY - 1 else "free" for i in range(TOTAL)]


def report(tally: Tally, start: float) -> dict:
    free = tally.done["free"]
    limited = tally.done["limited"]
    result = {"free_per_s": len(free) / (max(free) - start)}
    if limited:
        span = max(limited) - min(limited)
        result["limited_per_s"] = (len(limited) - 1) / span if span else float("nan")
    return result


def run_nbqueue(mixed: bool) -> dict:
    import nbqueue

    app = nbqueue.App("bench-rate")
    kinds = plan(mixed)
    tally = Tally(kinds.count("free"), kinds.count("limited"))

    @app.task(name="free", ignore_result=True)
    def free(i):
        tally.hit("free")

    @app.task(name="limited", ignore_result=True, rate_limit=RATE)
    def limited(i):
        tally.hit("limited")

    tasks = {"free": free, "limited": limited}
    with app.worker(concurrency=CONCURRENCY):
        start = time.perf_counter()
        nbqueue.group(tasks[kind].s(i) for i, kind in enumerate(kinds)).apply_async()
        if not tally.all_done.wait(600):
            raise RuntimeError(f"not done: { {k: len(v) for k, v in tally.done.items()} }")
    return report(tally, start)


def run_celery(mixed: bool) -> dict:
    from celery import Celery, group
    from celery.contrib.testing.worker import start_worker

    app = Celery("bench-rate", broker="memory://", backend="cache+memory://")
    app.conf.broker_transport_options = {"polling_interval": 0.001}
    app.conf.worker_hijack_root_logger = False
    kinds = plan(mixed)
    tally = Tally(kinds.count("free"), kinds.count("limited"))

    @app.task(name="free", ignore_result=True)
    def free(i):
        tally.hit("free")

    @app.task(name="limited", ignore_result=True, rate_limit=RATE)
    def limited(i):
        tally.hit("limited")

    tasks = {"free": free, "limited": limited}
    with start_worker(
        app,
        pool="threads",
        concurrency=CONCURRENCY,
        perform_ping_check=False,
        loglevel="ERROR",
    ):
        start = time.perf_counter()
        group(tasks[kind].s(i) for i, kind in enumerate(kinds)).apply_async()
        if not tally.all_done.wait(600):
            raise RuntimeError(f"not done: { {k: len(v) for k, v in tally.done.items()} }")
    return report(tally, start)


SYSTEMS = {"nbqueue": run_nbqueue, "celery": run_celery}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(SYSTEMS), help="(child) run one case")
    parser.add_argument("--mixed", action="store_true", help="(child) with the limited type")
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--systems", default="nbqueue,celery")
    args = parser.parse_args()
    if args.run:
        logging.disable(logging.WARNING)
        emit(SYSTEMS[args.run](args.mixed))
        return
    cases = []
    for name in args.systems.split(","):
        cases.append((f"{name} alone", ["--run", name]))
        cases.append((f"{name} mixed", ["--run", name, "--mixed"]))
    results = run_matrix(__file__, cases, repeats=1 if args.quick else 3, timeout=900)
    print()
    print(table(results, ["free_per_s", "limited_per_s"]))
    print()
    for name in args.systems.split(","):
        alone = medians(results.get(f"{name} alone", []))
        mixed = medians(results.get(f"{name} mixed", []))
        if alone and mixed:
            kept = mixed["free_per_s"] / alone["free_per_s"]
            print(
                f"{name}: free tasks beside the limited type ran at ×{kept:.2f} their speed "
                f"alone (1.00 = not slowed); the limited type ran at "
                f"{mixed['limited_per_s']:.1f}/s (limit {RATE})"
            )


if __name__ == "__main__":
    main()
