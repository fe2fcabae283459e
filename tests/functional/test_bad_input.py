"""Bad input never kills a worker: it is logged, rejected, and the next message runs."""

from __future__ import annotations

import logging
import pickle

import pytest

import nbqueue
from nbqueue import serialization
from nbqueue.exceptions import NotRegistered


def publish_raw(app, body, *, headers, content_type="application/json"):
    with app.connection() as conn:
        producer = conn.Producer()
        producer.publish(
            body,
            routing_key="celery",
            headers=headers,
            content_type=content_type,
            content_encoding="utf-8",
        )


class Executed:
    hits: list[str] = []


def mark(what):
    Executed.hits.append(what)


class Evil:
    def __reduce__(self):
        return (mark, ("evil code ran",))


@pytest.fixture
def echo(app):
    @app.task(name="t.echo")
    def echo(x):
        return x

    return echo


CASES = {
    "garbage JSON": dict(
        body=b"{not json", headers={"task": "t.echo", "id": "bad-1"}, log="malformed JSON body"
    ),
    "missing task header": dict(
        body=b"[[1], {}, {}]", headers={"id": "bad-2"}, log="no 'task' header"
    ),
    "missing id header": dict(
        body=b"[[1], {}, {}]", headers={"task": "t.echo"}, log="header 'id' must be a task id"
    ),
    "unaccepted content type": dict(
        body=pickle.dumps(((1,), {}, {})),
        headers={"task": "t.echo", "id": "bad-4"},
        content_type=serialization.PICKLE,
        log="refusing to deserialize content of type",
    ),
    "forged pickle": dict(
        body=serialization.sign(pickle.dumps(((Evil(),), {}, {})), b"forged"),
        headers={"task": "t.echo", "id": "bad-5"},
        content_type=serialization.CLOUDPICKLE,
        log="signed with another key",
    ),
    "unsigned pickle": dict(
        body=pickle.dumps(((Evil(),), {}, {})),
        headers={"task": "t.echo", "id": "bad-6"},
        content_type=serialization.CLOUDPICKLE,
        log="unsigned pickle",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_message_is_rejected_logged_and_the_next_one_runs(app, echo, caplog, case):
    spec = CASES[case]
    Executed.hits.clear()
    with app.worker(concurrency=1) as worker, caplog.at_level(logging.ERROR):
        publish_raw(
            app,
            spec["body"],
            headers=spec["headers"],
            content_type=spec.get("content_type", "application/json"),
        )
        assert echo.delay("next").get(timeout=10) == "next"
        assert worker.drain(10)
        assert worker.stats["invalid"] == 1
    assert spec["log"] in caplog.text
    assert "received invalid task message" in caplog.text
    assert Executed.hits == []
    assert app.broker.space.sizes().get("celery", 0) == 0  # rejected, not requeued
    assert not app.broker.space.unacked


def test_unknown_task_stores_a_not_registered_failure_like_celery(app, echo, caplog):
    with app.worker(concurrency=1) as worker, caplog.at_level(logging.ERROR):
        result = app.send_task("t.missing", (1,))
        with pytest.raises(NotRegistered):
            result.get(timeout=10)
        assert echo.delay(1).get(timeout=10) == 1
        assert worker.stats["unknown"] == 1
    from nbqueue.backends import prepare_exception

    assert prepare_exception(result.result) == {
        "exc_type": "NotRegistered",
        "exc_message": ["t.missing"],
        "exc_module": "celery.exceptions",
    }


def test_a_task_from_another_app_key_is_refused(echo):
    """A client with another secret key: its pickles never run on this worker."""
    worker_app = echo.app
    client = nbqueue.App(
        "client", broker=f"memory://{worker_app._namespace()}", secret_key="client key"
    )
    worker_app.conf.secret_key = "worker key"

    @client.task(name="t.echo", serializer="cloudpickle")
    def echo_client(x):
        return x

    try:
        with worker_app.worker(concurrency=1) as worker:
            echo_client.delay(Evil())
            assert worker.drain(10)
            assert worker.stats["invalid"] == 1
            assert echo.delay(2).get(timeout=10) == 2
    finally:
        client.close()
