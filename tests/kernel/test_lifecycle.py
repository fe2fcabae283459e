"""Kernel life cycle: interrupting a waiting cell, and shutting the kernel down."""

from __future__ import annotations

import pytest
import redis

SETUP = """
%load_ext nbqueue
import threading, time
import nbqueue
started, release = threading.Event(), threading.Event()
"""


def test_interrupting_a_get_stops_the_wait_and_revokes_the_cells_tasks(raw_kernel) -> None:
    kernel = raw_kernel
    kernel.run(SETUP + "app = nbqueue.App('interrupt')")
    kernel.run("%%task block()\nstarted.set()\nrelease.wait(60)\nreturn 'ran'")
    kernel.run("%%task add(x, y)\nreturn x + y")
    kernel.run("%worker start -c 1")
    kernel.run("%config NbqueueMagics.revoke_on_interrupt = True")
    # no flush=True: a flushing print blocks the cell until the IOPub thread has sent the
    # text, and an interrupt landing inside that flush loses the cell's later output; the
    # stream's own flush sends it while the cell already waits in get()
    cell = kernel.execute(
        "a = block.delay()\nstarted.wait(30)\nb = add.delay(1, 2)\nprint('waiting')\na.get()"
    )
    kernel.pump(lambda: "waiting" in kernel.text(cell), timeout=60)
    kernel.km.interrupt_kernel()
    kernel.pump(lambda: kernel.idle(cell), timeout=60)
    errors = [m["content"]["ename"] for m in kernel.by_parent[cell] if m["msg_type"] == "error"]
    assert errors == ["KeyboardInterrupt"]
    assert "revoked 2 task(s)" in kernel.text(cell)
    check = kernel.run(
        "release.set()\nprint(a.get(timeout=30), repr(b.get(timeout=30, propagate=False)))"
    )
    assert kernel.text(check) == "ran TaskRevokedError('revoked')\n"  # b never ran


def test_shutdown_stops_workers_and_returns_unacked_messages(
    raw_kernel, redis_url, redis_db
) -> None:
    kernel = raw_kernel
    kernel.run(
        SETUP + f"app = nbqueue.App('down', broker={redis_url!r}, backend='memory://', "
        "worker_shutdown_timeout=1.0)"
    )
    # code sent through Redis travels by value: these tasks use no unpicklable globals
    kernel.run("%%task long_job()\ntime.sleep(60)")
    kernel.run("%%task add(x, y)\nreturn x + y")
    kernel.run("w = %worker start -c 1")
    reserved = kernel.run(
        "a = long_job.delay()\nfor i in range(5): add.delay(i, i)\n"
        "deadline = time.monotonic() + 30\n"
        "while (len(w.state.reserved) < 4 or not w.state.active)"
        " and time.monotonic() < deadline:\n"
        "    w.state.wait_change(w.state.version, 0.1)\n"
        "print(len(w.state.reserved))"
    )
    assert kernel.text(reserved) == "4\n"  # prefetched: unacknowledged in Redis
    client = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    client.set("nbqueue-test-sentinel", 1)
    try:
        assert client.hlen("unacked") == 4
        process = kernel.km.provisioner.process
        kernel.km.shutdown_kernel(now=False)
        assert process.poll() == 0, "the kernel exited by itself, neither terminated nor killed"
        if not client.exists("nbqueue-test-sentinel"):  # only on a shared developer machine
            pytest.skip(f"another process flushed Redis db {redis_db} during the test")
        buckets = ["celery", *(f"celery\x06\x16{p}" for p in (3, 6, 9))]  # kombu's priorities
        waiting = sum(client.llen(key) for key in buckets)
        assert waiting == 5, "the four reserved and the one never fetched are back"
        assert client.hlen("unacked") == 0
    finally:
        client.close()
