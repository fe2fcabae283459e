"""``nbqueue demo``: a batch on an in-process worker, with a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    """Start an in-process worker, run a batch with a progress bar, show results and steps."""
    from .. import App, group
    from ..progress import show_in_terminal

    app = App("demo")

    @app.task(name="demo.simulate")
    def simulate(i: int, delay: float) -> int:
        time.sleep(delay)  # stands in for I/O: a download, a query
        return i * i

    started = time.perf_counter()
    with app.worker(concurrency=args.concurrency) as worker:
        print(
            f"worker {worker.hostname} started in {time.perf_counter() - started:.3f} s "
            f"({args.concurrency} threads, in-process broker and results)"
        )
        result = group(simulate.s(i, args.delay) for i in range(args.tasks)).apply_async()
        show_in_terminal(result, description="demo", file=sys.stdout)
        values = result.get(timeout=120)
        elapsed = time.perf_counter() - started
        print(f"{len(values)} results, first ten: {values[:10]}")
        print(f"sum of squares: {sum(values)} (expected {sum(i * i for i in range(args.tasks))})")
        print(f"{args.tasks} tasks in {elapsed:.2f} s\n")
        print("worker bootsteps:")
        print(worker.blueprint.text())
    return 0 if values == [i * i for i in range(args.tasks)] else 1


def add_parser(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run a batch on an in-process worker")
    demo.add_argument("-n", "--tasks", type=int, default=200, help="tasks to run (200)")
    demo.add_argument("-c", "--concurrency", type=int, default=4, help="worker threads (4)")
    demo.add_argument("--delay", type=float, default=0.01, help="seconds each task waits")
    demo.set_defaults(handler=run)
