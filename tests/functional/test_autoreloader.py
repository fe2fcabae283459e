"""New code takes effect without restarting the worker: re-defined tasks and edited modules."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import uuid

import pytest

from nbqueue.worker.steps.autoreloader import Autoreloader
from tests.helpers import wait_for


def test_a_redefined_task_runs_its_new_code_for_the_next_message(app):
    @app.task(name="greet")
    def greet(who):
        return f"hello {who}"

    with app.worker(concurrency=1) as worker:
        assert greet.delay("ada").get(timeout=10) == "hello ada"

        @app.task(name="greet")  # a re-run notebook cell
        def greet(who):
            return f"goodbye {who}"

        assert greet.delay("ada").get(timeout=10) == "goodbye ada"
        assert worker.blueprint.worker.state_of("autoreloader") == "disabled"


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for modules written by the test; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _write(path, source: str, bump: int) -> None:
    """Write `source` and move the file's mtime on, so the change is seen whatever the clock."""
    path.write_text(textwrap.dedent(source))
    stamp = 1_700_000_000_000_000_000 + bump * 2_000_000_000
    os.utime(path, ns=(stamp, stamp))


def _module(module_dir, source: str) -> tuple[str, object]:
    name = f"tasks_{uuid.uuid4().hex[:8]}"
    _write(module_dir / f"{name}.py", source, 0)
    return name, __import__(name)


def test_an_edited_module_registering_on_the_app_is_reloaded(app, module_dir):
    holder = f"holder_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{holder}.py").write_text("app = None\n")
    __import__(holder).app = app
    name, _ = _module(
        module_dir,
        f"""
        from {holder} import app

        @app.task(name="shout")
        def shout(text):
            return text.upper()
        """,
    )
    app.steps["worker"].add(Autoreloader, interval=3600)
    with app.worker(concurrency=1, autoreload=True) as worker:
        reloader = worker.steps["autoreloader"]
        assert name in reloader.info()["watched"]
        assert app.send_task("shout", ("hi",)).get(timeout=10) == "HI"
        assert reloader.tick() == []  # nothing changed yet
        _write(
            module_dir / f"{name}.py",
            f"""
            from {holder} import app

            @app.task(name="shout")
            def shout(text):
                return text.upper() + "!!"
            """,
            1,
        )
        assert reloader.tick() == [name]
        assert app.send_task("shout", ("hi",)).get(timeout=10) == "HI!!"
        assert worker.statistics()["autoreloader"]["reloaded"] == [name]


def test_a_module_with_its_own_app_has_its_tasks_rebound_to_the_worker_app(module_dir):
    name, module = _module(
        module_dir,
        """
        import nbqueue
        app = nbqueue.App("own")

        @app.task(name="double", max_retries=7)
        def double(x):
            return 2 * x
        """,
    )
    app = module.app
    app.steps["worker"].add(Autoreloader, interval=3600)
    try:
        with app.worker(concurrency=1, autoreload=True) as worker:
            assert module.double.delay(4).get(timeout=10) == 8
            _write(
                module_dir / f"{name}.py",
                """
                import nbqueue
                app = nbqueue.App("own")  # a new app on every import

                @app.task(name="double", max_retries=7)
                def double(x):
                    return 3 * x
                """,
                1,
            )
            assert worker.steps["autoreloader"].tick() == [name]
            rebound = app.tasks["double"]
            assert rebound.max_retries == 7 and rebound.app is app
            assert app.send_task("double", (4,)).get(timeout=10) == 12
    finally:
        app.close()
        sys.modules[name].app.close()


def test_a_broken_edit_is_logged_and_the_old_code_keeps_running(app, module_dir, caplog):
    name, module = _module(module_dir, "def triple(x):\n    return 3 * x\n")
    app.task(name="triple")(module.triple)
    app.steps["worker"].add(Autoreloader, interval=3600)
    path = module_dir / f"{name}.py"
    with app.worker(concurrency=1, autoreload=True) as worker:
        reloader = worker.steps["autoreloader"]
        _write(path, "def triple(x:\n    return 3 * x\n", 1)
        with caplog.at_level(logging.ERROR):
            assert reloader.tick() == []
        assert f"could not reload {name}" in caplog.text and "SyntaxError" in caplog.text
        assert reloader.tick() == []  # not retried until the file changes again
        assert app.send_task("triple", (2,)).get(timeout=10) == 6
        _write(path, "def triple(x):\n    return 30 * x\n", 2)
        assert reloader.tick() == [name]
        assert app.send_task("triple", (2,)).get(timeout=10) == 60
        assert reloader.info()["failed"] == [name]


def test_reloads_on_its_own_timer(app, module_dir):
    name, module = _module(module_dir, "def version():\n    return 1\n")
    app.task(name="version")(module.version)
    app.steps["worker"].add(Autoreloader, interval=0.02)
    with app.worker(concurrency=1, autoreload=True) as worker:
        _write(module_dir / f"{name}.py", "def version():\n    return 2\n", 1)
        wait_for(lambda: worker.steps["autoreloader"].reloaded, message="the module reloaded")
        assert app.send_task("version").get(timeout=10) == 2
