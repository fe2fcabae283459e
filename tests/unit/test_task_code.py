"""A task defined where no other process can import it travels as its function, by value."""

from __future__ import annotations

import cloudpickle

import nbqueue


def test_code_blob_holds_the_plain_function_not_the_task() -> None:
    app = nbqueue.App("code")

    def make():
        def add(x, y):
            """Add two numbers."""
            return x + y

        return add

    task = app.task(make(), name="add")
    assert not task.importable
    spec = cloudpickle.loads(task.code_blob())
    assert spec["run"](2, 3) == 5
    assert not hasattr(spec["run"], "__self__"), "a bound method would pickle the task too"
    assert task.__doc__ == "Add two numbers."
