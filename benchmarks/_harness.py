"""Shared harness: run each system in a fresh process, rotate the order, report medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Workload", "emit", "measure", "percentile", "run_matrix", "table"]

HERE = os.path.dirname(os.path.abspath(__file__))


class Workload:
    """What one run measures: throughput of a batch, then sequential round trips."""

    def __init__(self, batch: int = 5000, rounds: int = 500, warmup: int = 50) -> None:
        self.batch = batch
        self.rounds = rounds
        self.warmup = warmup


#: the Redis server of the Redis benchmarks, and the two databases they own (and flush)
REDIS_SERVER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
REDIS_DBS = tuple(int(n) for n in os.environ.get("BENCH_REDIS_DBS", "4,5").split(","))
#: the broker and result URLs there (the first two of those databases)
REDIS_BROKER, REDIS_BACKEND = (f"{REDIS_SERVER}/{db}" for db in REDIS_DBS[:2])


def flush_redis_dbs() -> None:
    """Empty the benchmark's own Redis databases (``BENCH_REDIS_DBS``) before a run."""
    import redis

    for db in REDIS_DBS:
        client = redis.Redis.from_url(f"{REDIS_SERVER}/{db}")
        client.flushdb()
        client.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure(send: Callable[[int], Any], wait: Callable[[Any], Any], workload: Workload) -> dict:
    """Throughput (first send to last result) and round-trip latency, in one process."""
    for i in range(workload.warmup):
        wait(send(i))
    start = time.perf_counter()
    handles = [send(i) for i in range(workload.batch)]
    for handle in handles:
        wait(handle)
    elapsed = time.perf_counter() - start
    latencies = []
    for i in range(workload.rounds):
        t0 = time.perf_counter()
        wait(send(i))
        latencies.append(time.perf_counter() - t0)
    return {
        "tasks_per_s": workload.batch / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def emit(result: dict) -> None:
    """Print one run's result as the last line of the child's output."""
    print("RESULT " + json.dumps(result), flush=True)


def _run_child(script: str, args: list[str], timeout: float) -> dict | None:
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(HERE),
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(f"run {args} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}\n")
    return None


def run_matrix(
    script: str, cases: Iterable[tuple[str, list[str]]], repeats: int = 3, timeout: float = 300
) -> dict[str, list[dict]]:
    """Run every case `repeats` times, each in a fresh process, rotating the order."""
    cases = list(cases)
    results: dict[str, list[dict]] = {label: [] for label, _ in cases}
    for round_no in range(repeats):
        rotated = cases[round_no % len(cases) :] + cases[: round_no % len(cases)]
        for label, args in rotated:
            result = _run_child(script, args, timeout)
            if result is not None:
                results[label].append(result)
                print(f"  round {round_no + 1} {label:<28} {json.dumps(result)}", flush=True)
    return results


def medians(runs: list[dict]) -> dict[str, float]:
    if not runs:
        return {}
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(results: dict[str, list[dict]], columns: list[str]) -> str:
    """A markdown table of medians per case."""
    lines = ["| case | runs | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for label, runs in results.items():
        m = medians(runs)
        cells = [_fmt(m[c]) if c in m else "n/a" for c in columns]
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
