"""Routing (task_routes, Queue/Exchange declarations, several queues) and priorities."""

from __future__ import annotations

import pytest
from kombu import Exchange, Queue

import nbqueue
from nbqueue.exceptions import ConfigurationError


def route_of(app, name, **options):
    route = app.router.route(name, (), {}, options)
    return route.queue.name, route.exchange, route.routing_key


def test_task_routes_exact_names_then_globs_then_functions_in_order():
    def by_argument(name, args, kwargs, options, task=None, **kw):
        if name == "media.resize":
            return {"queue": "images", "priority": 3}
        return None

    app = nbqueue.App(
        "routes",
        task_routes=[
            {"feed.poll": "polls", "feed.*": {"queue": "feeds"}, "*.report": "reports"},
            by_argument,
        ],
    )
    try:
        assert route_of(app, "feed.poll") == ("polls", "", "polls")  # exact beats the glob
        assert route_of(app, "feed.fetch") == ("feeds", "", "feeds")
        assert route_of(app, "daily.report") == ("reports", "", "reports")
        route = app.router.route("media.resize", (), {}, {})
        assert (route.queue.name, route.priority) == ("images", 3)
        assert route_of(app, "other.task") == ("celery", "", "celery")
        assert route_of(app, "feed.fetch", queue="urgent") == ("urgent", "", "urgent")
    finally:
        app.close()


def test_a_task_queue_option_is_the_fallback_after_routes(app):
    app.conf.task_routes = {"t.routed": "routed"}

    @app.task(name="t.routed", queue="own")
    def routed():
        return 1

    @app.task(name="t.own", queue="own")
    def own():
        return 2

    routed.delay()
    own.delay()
    assert app.broker.space.sizes() == {"routed": 1, "own": 1}


def test_unknown_queues_are_refused_when_missing_queues_are_not_created():
    app = nbqueue.App("strict", task_create_missing_queues=False)
    try:
        with pytest.raises(ConfigurationError, match="not declared in task_queues"):
            app.router.queue("nowhere")
    finally:
        app.close()


def test_topic_and_fanout_exchanges_deliver_by_their_bindings():
    news = Exchange("news", type="topic")
    everyone = Exchange("everyone", type="fanout")
    app = nbqueue.App(
        "exchanges",
        task_queues=[
            Queue("sports", news, routing_key="sports.#"),
            Queue("all_news", news, routing_key="#"),
            Queue("a", everyone),
            Queue("b", everyone),
        ],
    )
    try:

        @app.task(name="t.note")
        def note(text):
            return text

        with app.worker(concurrency=2, queues=["sports", "all_news", "a", "b"]) as worker:
            # the worker declared the exchanges, queues and bindings as it began consuming
            note.apply_async(("goal",), exchange="news", routing_key="sports.football")
            note.apply_async(("rain",), exchange="news", routing_key="weather.today")
            note.apply_async(("hello",), exchange="everyone")
            assert worker.drain(10)
            assert worker.state.snapshot()["total"] == {"t.note": 2 + 1 + 2}
    finally:
        app.close()


def test_one_worker_consumes_several_queues(app):
    @app.task(name="t.where", bind=True)
    def where(self):
        return self.request.delivery_info["routing_key"]

    with app.worker(concurrency=2, queues="one,two,celery"):
        results = [where.apply_async(queue=q) for q in ("one", "two", "celery")]
        assert [r.get(timeout=10) for r in results] == ["one", "two", "celery"]


def test_priorities_on_the_in_process_transport_serve_9_first(app):
    order = []

    @app.task(name="t.prio", ignore_result=True)
    def prio(p):
        order.append(p)

    for p in (0, 9, 3, 5, 9, 1, 7):
        prio.apply_async((p,), priority=p)
    with app.worker(concurrency=1, prefetch_multiplier=1) as worker:
        assert worker.drain(10)
    assert order == [9, 9, 7, 5, 3, 1, 0]
