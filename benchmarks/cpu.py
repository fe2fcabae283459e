"""CPU time per task of the nbqueue process (client and worker threads), load-independent.

    python benchmarks/cpu.py                    # Redis round trip, batch and sequential
    python benchmarks/cpu.py --events monitor   # ... with task events listened to
    python benchmarks/cpu.py --broker memory:// # the in-process transport instead

Wall-clock throughput on a shared machine moves with everyone else's load; the CPU this
process spends per task does not (much). ``batch`` = send N no-op tasks then wait for every
result; ``seq`` = send-then-wait round trips one at a time. Figures are process CPU time
(user + system, every thread) per task, medians of ``--repeat`` runs, and (on Linux) the
same split by thread: ``main`` (the client), ``hub`` (the worker's consumer loop),
``pool`` (task threads), ``results`` (the result listener), ``events`` (a receiver).
Redis: ``BENCH_REDIS`` (default ``redis://127.0.0.1:6379``), ``BENCH_REDIS_DBS`` (4,5),
flushed first.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from benchmarks._harness import (  # noqa: E402 - after the sys.path fix above
    REDIS_BACKEND,
    REDIS_BROKER,
    flush_redis_dbs,
)
from benchmarks.tasks import noop  # noqa: E402


def _role(name: str) -> str:
    for role in ("hub", "pool", "results", "events"):
        if role in name:
            return role
    return "main" if name == "MainThread" else "other"


def cpu_by_role() -> Counter[str]:
    """CPU seconds so far of this process's threads, summed by role (Linux: /proc)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: Counter[str] = Counter()
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        out[_role(names.get(int(tid), ""))] += (int(fields[11]) + int(fields[12])) / tick
    return out


def _span(fun: Any, n: int) -> dict[str, float]:
    """Run `fun`; CPU µs per task (total and by thread role) and tasks per second."""
    roles, cpu, wall = cpu_by_role(), time.process_time(), time.perf_counter()
    fun()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = cpu_by_role()
    out = {"us": cpu / n * 1e6, "tps": n / wall}
    for role in sorted(after):
        out[f"us_{role}"] = (after[role] - roles[role]) / n * 1e6
    return out


def _app(args: argparse.Namespace) -> Any:
    import nbqueue

    if args.broker != "redis":
        return nbqueue.App("cpu", broker=args.broker)
    flush_redis_dbs()
    return nbqueue.App("cpu", broker=REDIS_BROKER, backend=REDIS_BACKEND)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    app = _app(args)
    task = app.task(name="bench.noop", serializer="json")(noop)
    receiver = None
    if args.events == "monitor":
        state = app.events.State()
        receiver = app.events.Receiver(handlers={"*": state.event})

    def batch() -> None:
        handles = [task.delay(i) for i in range(args.batch)]
        for handle in handles:
            handle.get(timeout=60)

    def seq() -> None:
        for i in range(args.rounds):
            task.delay(i).get(timeout=60)

    runs: dict[str, list[dict[str, float]]] = {"batch": [], "seq": []}
    with app.worker(concurrency=args.concurrency, send_events=args.events != "off"):
        if receiver is not None:
            receiver.start()
        seq()  # warm-up
        for _ in range(args.repeat):
            runs["batch"].append(_span(batch, args.batch))
            runs["seq"].append(_span(seq, args.rounds))
    if receiver is not None:
        receiver.stop()
    app.close()
    return {
        mode: {key: round(statistics.median(r.get(key, 0) for r in rs)) for key in rs[0]}
        for mode, rs in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="redis", help="'redis' or a broker URL")
    parser.add_argument("--events", choices=("off", "on", "monitor"), default="off")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    for mode, figures in run(args).items():
        print(f"{mode:<6}", "  ".join(f"{k} {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
