"""Kernel life cycle in an in-process shell: interrupts and exit."""

from __future__ import annotations

import pytest

from nbqueue.exceptions import TaskRevokedError


def run(shell, code: str):
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def test_an_interrupted_cell_revokes_what_it_sent_when_configured(shell, capsys) -> None:
    run(shell, "import nbqueue, threading\napp = nbqueue.App('intr')")
    run(shell, "started, release = threading.Event(), threading.Event()")
    run(shell, "%%task block()\nstarted.set()\nrelease.wait(30)\nreturn 'ran'")
    run(shell, "%%task add(x, y)\nreturn x + y")
    run(shell, "%worker start -c 1")
    run(shell, "%config NbqueueMagics.revoke_on_interrupt = True")
    try:
        cell = "a = block.delay()\nstarted.wait(30)\nb = add.delay(1, 2)\nraise KeyboardInterrupt"
        result = shell.run_cell(cell)
        assert isinstance(result.error_in_exec, KeyboardInterrupt)
        assert "revoked 2 task(s)" in capsys.readouterr().out
        shell.user_ns["release"].set()
        assert shell.user_ns["a"].get(timeout=30) == "ran"  # already running: it finishes
        with pytest.raises(TaskRevokedError):
            shell.user_ns["b"].get(timeout=30)  # waiting: never runs
        run(shell, "%config NbqueueMagics.revoke_on_interrupt = False")
        result = shell.run_cell("c = add.delay(2, 3)\nraise KeyboardInterrupt")
        assert "revoked" not in capsys.readouterr().out
        assert shell.user_ns["c"].get(timeout=30) == 5
    finally:
        shell.user_ns["release"].set()
        run(shell, "%config NbqueueMagics.revoke_on_interrupt = False")


def test_exit_stops_every_known_worker(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('bye')\nother = nbqueue.App('other')")
    first = run(shell, "%worker start")
    second = run(shell, "%worker start --app other")
    shell.exit_now = True  # what ipykernel's do_shutdown sets
    try:
        assert first.status == second.status == "stopped"
    finally:
        shell.exit_now = False
