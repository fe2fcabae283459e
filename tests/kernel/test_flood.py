"""What a real kernel sends the front end for a 10,000-task batch: few, throttled updates."""

from __future__ import annotations

from collections import defaultdict

SETUP = """
%load_ext nbqueue
import nbqueue
from nbqueue.jupyter.progress import ProgressView
app = nbqueue.App('flood')
"""


def _peak(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_10000_task_batch_sends_under_100_widget_messages_a_second(raw_kernel) -> None:
    kernel = raw_kernel
    kernel.run(SETUP)
    kernel.run("%%task inc(x)\nreturn x + 1")
    kernel.run("%worker start -c 4")  # its panel is displayed and counts every task too
    batch = kernel.run(
        "g = nbqueue.group(inc.s(i) for i in range(10_000)).apply_async()\n"
        "view = ProgressView(g)\ndisplay(view)\nassert view.wait(120), view\n"
        "print(view.bar.value, view.bar.max)",
        timeout=180,
    )
    assert kernel.text(batch) == "10000.0 10000.0\n"
    updates: dict[str, list[float]] = defaultdict(list)
    for messages in kernel.by_parent.values():
        for msg in messages:
            if msg["msg_type"] == "comm_msg" and msg["content"]["data"].get("method") == "update":
                updates[msg["content"]["comm_id"]].append(msg["header"]["date"].timestamp())
    assert updates, "the widgets were updated"
    per_widget = max(_peak(stamps) for stamps in updates.values())
    every_widget = _peak([t for stamps in updates.values() for t in stamps])
    assert per_widget <= 25, per_widget  # ~20 redraws a second per widget
    assert every_widget < 100, every_widget  # the progress bar and the panel together
    kernel.run("%worker stop")
