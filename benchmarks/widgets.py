"""What the live widgets cost, and what they send to the front end.

    python benchmarks/widgets.py            # medians of 3 rounds
    python benchmarks/widgets.py --quick    # one round

Workload: a group of 10,000 no-op tasks on a 4-thread in-process worker, timed from the
first send to the last result, once bare and once with a progress bar and a worker panel
watching it (no front end: messages are counted where ipywidgets sends them). Reported:
throughput with widgets as a ratio of the bare run, and the widgets' messages (total, and
the peak per second of the busiest widget). Figures only, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

# run as a script, this folder comes first on sys.path, where "redis" would be redis.py
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

BATCH = 10_000


def _count_messages() -> dict[str, list[float]]:
    import ipywidgets

    sent: dict[str, list[float]] = defaultdict(list)
    original = ipywidgets.Widget._send

    def send(self, msg, buffers=None):
        sent[self.model_id].append(time.monotonic())
        return original(self, msg, buffers)

    ipywidgets.Widget._send = send
    return sent


def _peak(stamps: list[float]) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def one_round(with_widgets: bool, sent: dict[str, list[float]]) -> dict[str, float]:
    import nbqueue
    from nbqueue.jupyter.panel import WorkerPanel
    from nbqueue.jupyter.progress import ProgressView

    app = nbqueue.App("bench")

    @app.task(name="noop")
    def noop(i):
        return i

    sent.clear()
    with app.worker(concurrency=4) as worker:
        panel = WorkerPanel(worker) if with_widgets else None
        start = time.perf_counter()
        result = nbqueue.group(noop.s(i) for i in range(BATCH)).apply_async()
        view = ProgressView(result) if with_widgets else None
        result.join(timeout=300)
        elapsed = time.perf_counter() - start
        if view is not None:
            view.wait(30)
        if panel is not None:
            panel.close()
    app.close()
    return {
        "tasks_per_s": BATCH / elapsed,
        "messages": float(sum(len(v) for v in sent.values())),
        "peak_per_s": float(max((_peak(sorted(v)) for v in sent.values()), default=0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    rounds = 1 if parser.parse_args().quick else 3
    sent = _count_messages()
    bare, watched = [], []
    for _ in range(rounds):
        bare.append(one_round(False, sent))
        watched.append(one_round(True, sent))

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"10,000-task group, 4 threads, medians of {rounds}:")
    print(f"  bare:          {med(bare, 'tasks_per_s'):8.0f} tasks/s")
    print(
        f"  with widgets:  {med(watched, 'tasks_per_s'):8.0f} tasks/s "
        f"({med(watched, 'tasks_per_s') / med(bare, 'tasks_per_s'):.2f}x of bare)"
    )
    print(
        f"  widget messages: {med(watched, 'messages'):.0f} in all, "
        f"peak {med(watched, 'peak_per_s'):.0f}/s for the busiest widget"
    )


if __name__ == "__main__":
    main()
