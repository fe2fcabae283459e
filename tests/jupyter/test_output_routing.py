"""Output routing: a task's output goes to the cell that sent it (kernel-free, with a shell
double that records the per-thread parent exactly as ipykernel 7's API is called)."""

from __future__ import annotations

import contextvars
import threading

import pytest

import nbqueue
from nbqueue.jupyter.output import OutputRouter


class KernelShell:
    """ipykernel's parent API: a global parent, and per-thread parents in a context var."""

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[dict] = contextvars.ContextVar("parent")
        self._global: dict = {}
        self.execution_count = 1

    def set_parent(self, parent: dict) -> None:  # what the kernel does for each cell
        self._var.set(parent)
        self._global = parent

    def get_parent(self) -> dict:
        try:
            return self._var.get()
        except LookupError:
            return self._global

    def set_thread_parent(self, parent: dict):
        return self._var.set(parent)

    def reset_thread_parent(self, token) -> None:
        self._var.reset(token)


@pytest.fixture
def routed():
    shell = KernelShell()
    app = nbqueue.App("routing")
    router = OutputRouter(shell)
    router.attach(app)
    router.attach(app)  # idempotent
    try:
        yield shell, app, router
    finally:
        router.detach_all()
        app.close()


def test_a_task_writes_under_the_cell_that_sent_it(routed) -> None:
    shell, app, _ = routed
    seen: dict[str, dict] = {}
    release = threading.Event()

    @app.task(name="report")
    def report(label):
        release.wait(30)
        seen[label] = shell.get_parent()  # what print/display would use in this thread

    with app.worker(concurrency=2):
        shell.set_parent({"msg_id": "cell-1"})
        first = report.delay("first")
        shell.set_parent({"msg_id": "cell-2"})  # the next cell runs while `first` waits
        second = report.delay("second")
        release.set()
        first.get(timeout=30)
        second.get(timeout=30)
    assert seen == {"first": {"msg_id": "cell-1"}, "second": {"msg_id": "cell-2"}}


def test_tasks_sent_by_a_task_inherit_its_cell_and_parents_are_forgotten(routed) -> None:
    shell, app, router = routed
    seen: list[dict] = []

    @app.task(name="child")
    def child():
        seen.append(shell.get_parent())

    @app.task(name="parent")
    def parent():
        return child.delay().id

    with app.worker(concurrency=2) as worker:
        shell.set_parent({"msg_id": "cell-7"})
        child_id = parent.delay().get(timeout=30)
        shell.set_parent({"msg_id": "cell-8"})
        app.AsyncResult(child_id).get(timeout=30)
        worker.drain()
    assert seen == [{"msg_id": "cell-7"}]
    assert router.parent_of(child_id) is None  # dropped once run


def test_the_cell_remembers_what_it_sent(routed) -> None:
    _shell, app, router = routed

    @app.task(name="noop")
    def noop():
        return None

    router.new_cell()
    ids = [noop.delay().id for _ in range(3)]
    assert router.sent_by_cell == ids
    router.new_cell()
    assert router.sent_by_cell == []


def test_a_shell_without_thread_parents_is_left_alone() -> None:
    class OldShell:
        def get_parent(self):
            return {"msg_id": "x"}

    app = nbqueue.App("old")
    router = OutputRouter(OldShell())
    router.attach(app)

    @app.task(name="noop")
    def noop():
        return 1

    try:
        with app.worker(concurrency=1):
            assert noop.delay().get(timeout=30) == 1
        assert not router.supported
    finally:
        router.detach_all()
        app.close()
