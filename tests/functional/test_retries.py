"""Retries as Celery sends them: same id, retries + 1, the ETA, the parent-id quirk, RETRY
stored between attempts, FAILURE with the last exception once they run out."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import pytest

from nbqueue import states
from nbqueue.exceptions import MaxRetriesExceededError, Reject
from nbqueue.protocol import parse_time
from nbqueue.task import backoff_countdown
from tests.helpers import wait_for


def published(app):
    """Every task message the app publishes: its headers and (args, kwargs, embed)."""
    sent = []
    app.signals.before_task_publish.connect(
        lambda sender, headers, body, properties, **kw: sent.append(
            {"headers": dict(headers), "body": body, "properties": dict(properties)}
        )
    )
    return sent


def stored_states(app, task_id):
    """The states stored for `task_id`, in order."""
    seen = []
    app.backend.add_listener(lambda tid, meta: seen.append(meta) if tid == task_id else None)
    return seen


def test_a_retry_is_the_same_message_again_with_retries_plus_one_and_an_eta(app):
    sent = published(app)

    @app.task(bind=True, time_limit=30, soft_time_limit=20)
    def flaky(self, x):
        if self.request.retries < 2:
            raise self.retry(exc=KeyError("again"), countdown=0.05)
        return x

    with app.worker(concurrency=1):
        result = flaky.apply_async((7,), priority=6, headers={"x-custom": "kept"})
        metas = stored_states(app, result.id)
        assert result.get(timeout=10) == 7
    first, *retries = sent
    assert [m["headers"]["retries"] for m in sent] == [0, 1, 2]
    for message in retries:
        headers = message["headers"]
        assert headers["id"] == first["headers"]["id"] == result.id
        assert headers["parent_id"] == result.id  # Celery's quirk: its own id
        assert headers["root_id"] == result.id
        assert headers["timelimit"] == [30, 20]
        assert headers["x-custom"] == "kept"
        assert message["properties"]["priority"] == 6
        assert message["body"][:2] == ([7], {})
        eta = parse_time(headers["eta"])
        assert eta is not None and eta <= datetime.now(timezone.utc)
    assert first["headers"]["eta"] is None
    assert [m["status"] for m in metas] == [states.RETRY, states.RETRY, states.SUCCESS]
    retry_meta = metas[0]
    assert isinstance(retry_meta["result"], KeyError)
    assert retry_meta["children"] == [[[result.id, None], None]]


def test_a_retried_subtask_keeps_its_parent(app):
    sent = published(app)

    @app.task(bind=True)
    def child(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return "child done"

    @app.task(bind=True)
    def parent(self):
        child.delay()
        return self.request.id

    with app.worker(concurrency=2) as worker:
        parent_id = parent.delay().get(timeout=10)
        assert worker.drain(10)
    child_messages = [m for m in sent if m["headers"]["task"] == child.name]
    assert [m["headers"]["retries"] for m in child_messages] == [0, 1]
    assert {m["headers"]["parent_id"] for m in child_messages} == {parent_id}


def test_running_out_of_retries_stores_failure_with_the_last_exception(app):
    attempts = []

    @app.task(bind=True, max_retries=2)
    def doomed(self):
        attempts.append(self.request.retries)
        raise self.retry(exc=ValueError(f"attempt {self.request.retries}"), countdown=0)

    @app.task(bind=True, max_retries=0)
    def no_exc(self):
        raise self.retry(countdown=0)

    with app.worker(concurrency=1):
        result = doomed.delay()
        with pytest.raises(ValueError, match="attempt 2"):
            result.get(timeout=10)
        with pytest.raises(MaxRetriesExceededError, match="Can't retry"):
            no_exc.delay().get(timeout=10)
    assert attempts == [0, 1, 2]
    assert result.state == states.FAILURE


def test_retry_without_countdown_uses_default_retry_delay(app):
    sent = published(app)
    retried = threading.Event()

    @app.task(bind=True, default_retry_delay=120)
    def later(self):
        retried.set()
        raise self.retry()

    with app.worker(concurrency=1) as worker:
        before = datetime.now(timezone.utc)
        result = later.delay()
        assert retried.wait(10)
        wait_for(lambda: result.id in worker.state.scheduled)
    eta = parse_time(sent[-1]["headers"]["eta"])
    assert 119 <= (eta - before).total_seconds() <= 125
    assert result.state == states.RETRY


def test_autoretry_for_with_exponential_backoff(app):
    sent = published(app)

    @app.task(autoretry_for=(ConnectionError,), retry_backoff=2, retry_jitter=False)
    def network(i):
        raise ConnectionError("down")

    with app.worker(concurrency=1) as worker:
        before = datetime.now(timezone.utc)
        results = [network.apply_async((i,), retries=i) for i in range(3)]
        wait_for(lambda: all(r.id in worker.state.scheduled for r in results))
    countdowns = {
        m["body"][0][0]: (parse_time(m["headers"]["eta"]) - before).total_seconds()
        for m in sent
        if m["headers"]["eta"]
    }
    for i, countdown in countdowns.items():
        assert 2 * 2**i <= countdown <= 2 * 2**i + 5  # factor 2: 2 s, 4 s, 8 s
    assert sorted(countdowns) == [0, 1, 2]


def test_backoff_is_celerys():
    assert backoff_countdown(0, True, 600, False) == 1
    assert backoff_countdown(3, 2, 600, False) == 16
    assert backoff_countdown(20, 1, 600, False) == 600  # retry_backoff_max
    rng = random.Random(1)
    values = {backoff_countdown(3, 1, 600, True, rng=rng) for _ in range(200)}
    assert values <= set(range(9)) and len(values) > 5  # full jitter: 0..8 whole seconds


def test_autoretry_gives_up_after_max_retries_with_the_error(app):
    attempts = []

    @app.task(bind=True, autoretry_for=(KeyError,), retry_kwargs={"max_retries": 1, "countdown": 0})
    def missing(self):
        attempts.append(self.request.retries)
        raise KeyError("gone")

    with app.worker(concurrency=1), pytest.raises(KeyError, match="gone"):
        missing.delay().get(timeout=10)
    assert attempts == [0, 1]


def test_a_retry_that_cannot_be_sent_rejects_the_message(app, monkeypatch):
    @app.task(bind=True)
    def unlucky(self):
        def broken(*args, **kwargs):
            raise ConnectionError("broker gone")

        monkeypatch.setattr(app, "send_task", broken)
        raise self.retry(countdown=0)

    with app.worker(concurrency=1) as worker:
        result = unlucky.delay()
        with pytest.raises(Reject):
            result.get(timeout=10)
        assert worker.drain(10)
    assert not app.broker.space.unacked


def test_retry_of_an_acks_late_task_acks_the_old_message(app):
    @app.task(bind=True, acks_late=True)
    def once_more(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return self.request.retries

    with app.worker(concurrency=1) as worker:
        assert once_more.delay().get(timeout=10) == 1
        assert worker.drain(10)
    assert not app.broker.space.unacked
    assert app.broker.space.sizes().get("celery", 0) == 0
