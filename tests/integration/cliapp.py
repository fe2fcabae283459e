"""An importable app for CLI tests: broker from $NBQ_TEST_BROKER, no result backend."""

from __future__ import annotations

import os
import pathlib
import threading

import nbqueue

app = nbqueue.App("cliapp", broker=os.environ.get("NBQ_TEST_BROKER", "memory://"), backend=None)


@app.task(name="cli.touch")
def touch(path: str, text: str) -> str:
    pathlib.Path(path).write_text(text)
    return text


@app.task(name="cli.block", acks_late=True)
def block(started: str) -> None:
    pathlib.Path(started).write_text("started")
    threading.Event().wait(60)
