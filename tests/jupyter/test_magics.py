"""The magics, run in an in-process IPython shell."""

from __future__ import annotations

import pytest

import nbqueue
from nbqueue.jupyter.queues import Listing
from tests.helpers import wait_for


def run(shell, code: str):
    """Run a cell; fail with its error if it raised."""
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def test_load_ext_registers_the_magics_once(shell) -> None:
    magics = shell.magics_manager.magics
    assert "task" in magics["cell"]
    assert {"worker", "nbqueue"} <= set(magics["line"])
    shell.run_line_magic("load_ext", "nbqueue")  # already loaded: nothing doubles
    assert len(shell.events.callbacks["post_run_cell"]) == len(
        set(shell.events.callbacks["post_run_cell"])
    )


def test_task_cell_defines_and_binds_a_task(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('m')")
    run(shell, '%%task add(x, y=2, *rest, sep=" ") --queue math --retries 5\nreturn x + y')
    add = shell.user_ns["add"]
    assert isinstance(add, nbqueue.Task)
    assert (add.name, add.queue, add.max_retries, add.bind) == ("__main__.add", "math", 5, False)
    assert add(1) == 3 and add(1, 5) == 6
    assert shell.user_ns["app"].tasks["__main__.add"] is add


def test_task_cell_options_name_bind_and_app(shell) -> None:
    run(shell, "import nbqueue\nfirst = nbqueue.App('first')\nsecond = nbqueue.App('second')")
    run(shell, "%%task --app first --name maths.mul --bind mul(x, y)\nreturn (self.name, x * y)")
    mul = shell.user_ns["mul"]
    assert mul.app is shell.user_ns["first"]
    assert mul(2, 3) == ("maths.mul", 6)
    assert "maths.mul" not in shell.user_ns["second"].tasks


def test_the_newest_app_in_the_namespace_is_the_default(shell) -> None:
    run(shell, "import nbqueue\nold = nbqueue.App('old')")
    run(shell, "new = nbqueue.App('new')")
    run(shell, "%%task f()\nreturn 1")
    assert shell.user_ns["f"].app is shell.user_ns["new"]
    run(shell, "del new")
    run(shell, "%%task g()\nreturn 1")
    assert shell.user_ns["g"].app is shell.user_ns["old"]


def test_usage_errors_are_clear(shell, capsys) -> None:
    result = shell.run_cell("%%task f(x)\nreturn x")
    assert "no nbqueue App in the notebook" in capsys.readouterr().err
    assert not result.success
    run(shell, "import nbqueue\napp = nbqueue.App('e')")
    for cell, message in [
        ("%%task\nreturn 1", "needs a signature"),
        ("%%task f(x,\nreturn 1", "signature"),
        ("%%task f(x)\nreturn (", "not valid Python"),
        ("%%task --app nothing f()\nreturn 1", "--app nothing"),
        ("%worker start --autoscale lots", "MAX,MIN"),
        ("%worker start -P nonsense", "unknown pool"),
        ("%nbqueue inspect format_disk", "use one of"),
    ]:
        assert not shell.run_cell(cell).success, cell
        assert message in capsys.readouterr().err, cell


def test_rerunning_a_task_cell_changes_what_a_running_worker_runs(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('redef')")
    run(shell, "%%task double(x)\nreturn 2 * x")
    run(shell, "%worker start -c 2")
    assert run(shell, "double.delay(21).get(timeout=30)") == 42
    run(shell, "%%task double(x)\nreturn str(x) * 2")
    assert run(shell, "double.delay(21).get(timeout=30)") == "2121"


def test_worker_start_does_not_duplicate_and_stop_stops(shell, capsys) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('w')")
    worker = run(shell, "%worker start -c 3 -Q a,b --name teach")
    assert worker.hostname.startswith("teach@")
    assert worker.options.concurrency == 3 and worker.queues == ("a", "b")
    assert run(shell, "%worker start -c 3 -Q a,b --name teach") is worker
    assert "already running" in capsys.readouterr().out
    app = shell.user_ns["app"]
    assert app.workers == [worker]
    assert shell.user_ns["_"] is worker  # the cell's value: shown as the worker panel
    panel = shell.magics_manager.registry["NbqueueMagics"].session.panel(worker)
    assert "started in" in panel.steps["tasks"].value  # it watched the start
    run(shell, "%worker status")
    assert "teach@" in capsys.readouterr().out
    run(shell, "%worker stop teach")
    assert worker.status == "stopped" and app.workers == []
    run(shell, "%worker stop")
    assert "no running workers" in capsys.readouterr().out


def test_worker_stop_all_and_ambiguity(shell, capsys) -> None:
    run(shell, "import nbqueue\na1 = nbqueue.App('a1')\na2 = nbqueue.App('a2')")
    run(shell, "%worker start --app a1 --name one")
    run(shell, "%worker start --app a1 --name two")
    run(shell, "%worker start --app a2")
    assert not shell.run_cell("%worker stop --app a1").success
    assert "several workers run" in capsys.readouterr().err
    run(shell, "%worker stop --all")
    assert shell.user_ns["a1"].workers == [] and shell.user_ns["a2"].workers == []


def test_background_cell_runs_on_a_worker_and_binds_underscore(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('bg')\nfactor = 7")
    run(shell, "%worker start -c 1")
    handle = run(shell, "%%task --background --name crunch\nself.progress(1, 2)\nfactor * 6")
    assert isinstance(handle, nbqueue.AsyncResult)
    assert shell.user_ns["_"] is handle
    assert handle.get(timeout=30) == 42
    assert "crunch" in shell.user_ns["app"].tasks  # --name is the task name


def test_peek_shows_waiting_messages_without_consuming_and_purge_empties(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('peek')")
    run(shell, "%%task add(x, y)\nreturn x + y")
    run(shell, "add.delay(1, 2); add.apply_async((3, 4), priority=7)")
    listing = run(shell, "%nbqueue peek celery")
    assert isinstance(listing, Listing) and len(listing) == 2
    first = listing.messages[0]
    assert first.headers["task"] == "__main__.add"
    assert first.properties["priority"] == 7  # delivered first
    assert first.body[0] == [3, 4]
    assert "<table>" in listing._repr_html_()
    limited = run(shell, "%nbqueue peek -n 1")
    assert len(limited) == 1
    assert "2 waiting message(s), showing the first 1" in repr(limited)
    assert "2 waiting message(s), showing the first 1" in limited._repr_html_()
    assert len(run(shell, "%nbqueue peek celery")) == 2  # still there
    run(shell, "%nbqueue purge celery")
    assert len(run(shell, "%nbqueue peek celery")) == 0


def test_inspect_calls_the_apps_remote_control(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('insp')")

    class Inspect:
        def __init__(self, **options):
            self.options = options

        def ping(self):
            return {"w@h": {"ok": "pong"}, **self.options}

        def query_task(self, *ids):
            return {"w@h": {task_id: ["active", {}] for task_id in ids}}

    class Control:
        def inspect(self, **options):
            return Inspect(**options)

    shell.user_ns["app"]._control = Control()
    assert run(shell, "%nbqueue inspect ping --timeout 2.5 -d a@h,b@h") == {
        "w@h": {"ok": "pong"},
        "timeout": 2.5,
        "destination": ["a@h", "b@h"],
    }
    assert run(shell, "%nbqueue inspect query_task id1 id2") == {
        "w@h": {"id1": ["active", {}], "id2": ["active", {}]}
    }


def test_events_and_monitor_magics_follow_the_app(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('ev')")
    run(shell, "%%task add(x, y)\nreturn x + y")
    log = run(shell, "%nbqueue events")
    monitor = run(shell, "%nbqueue monitor")
    assert run(shell, "%nbqueue monitor") is monitor  # one live monitor per app
    run(shell, "%worker start -c 1 --name ev")
    run(shell, "add.delay(1, 2).get(timeout=30)")
    wait_for(lambda: "task-succeeded" in log.text(), message="the event log")
    assert "worker-online ev@" in log.text()
    wait_for(lambda: "SUCCESS" in monitor.tasks.value, message="the monitor's task table")
    assert "ev@" in monitor.workers.value and "alive" in monitor.workers.value
    # unloading the extension (the fixture does) closes them and stops the monitor's ticks


@pytest.mark.parametrize("line", ["%worker status", "%nbqueue peek"])
def test_magics_name_the_missing_app(shell, capsys, line) -> None:
    assert not shell.run_cell(line).success
    assert "no nbqueue App" in capsys.readouterr().err


def test_results_and_workers_display_as_live_widgets(shell) -> None:
    run(shell, "import nbqueue\napp = nbqueue.App('show')")
    run(shell, "%%task add(x, y)\nreturn x + y")
    result = run(shell, "add.delay(1, 2)")
    data, _ = shell.display_formatter.format(result)
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("<ProgressView 0/1")
    worker = run(shell, "%worker start -c 1")
    data, _ = shell.display_formatter.format(worker)
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<svg" in data["text/html"]
    eager, _ = shell.display_formatter.format(run(shell, "add.apply((2, 3))"))
    assert "application/vnd.jupyter.widget-view+json" not in eager  # already done: plain HTML


def test_peek_on_redis_reads_the_priority_lists_in_delivery_order(shell, redis_url) -> None:
    run(shell, f"import nbqueue\napp = nbqueue.App('rpeek', broker={redis_url!r})")
    run(shell, "%%task add(x, y)\nreturn x + y")
    run(shell, "add.apply_async((1, 1)); add.apply_async((2, 2), priority=9)")
    run(shell, "add.apply_async((3, 3), priority=0)")
    listing = run(shell, "%nbqueue peek celery")
    assert [m.body[0] for m in listing.messages] == [[1, 1], [3, 3], [2, 2]]
    assert listing.messages[0].headers["task"] == "__main__.add"
    run(shell, "%nbqueue purge celery")
    assert len(run(shell, "%nbqueue peek celery")) == 0


def test_events_from_the_broker_show_every_workers_events(shell) -> None:
    pytest.importorskip("nbqueue.events", reason="the events receiver (branch cluster)")
    run(shell, "import nbqueue\napp = nbqueue.App('wire')")
    run(shell, "%%task add(x, y)\nreturn x + y")
    log = run(shell, "%nbqueue events --broker")
    assert log is not run(shell, "%nbqueue events")
    run(shell, "w = app.worker(concurrency=1, hostname='wire@h', send_events=True).start()")
    run(shell, "add.delay(1, 2).get(timeout=30)")
    wait_for(lambda: "task-succeeded wire@h" in log.text(), timeout=30, message="wire events")
    run(shell, "w.stop()")
