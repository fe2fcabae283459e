"""Settings: Celery's names and defaults; typos are errors with a hint."""

from __future__ import annotations

import pytest

from nbqueue.config import DEFAULTS, Settings
from nbqueue.exceptions import ConfigurationError
from tests.captures import load


def test_defaults_match_celery_where_celery_has_the_setting():
    celery = load("celery_defaults.json")
    ours = Settings()
    # deliberate differences: threads (prefork would fork the kernel), and signed cloudpickle
    # accepted so that notebook-defined tasks work out of the box
    different = {"worker_pool", "accept_content", "result_expires"}
    for key, value in celery.items():
        if key in DEFAULTS and key not in different:
            assert ours[key] == value, key
    assert ours.result_expires.total_seconds() == 86400


def test_unknown_setting_raises_with_the_closest_names():
    with pytest.raises(ConfigurationError, match="Did you mean 'task_acks_late'"):
        Settings({"task_ack_late": True})
    conf = Settings()
    with pytest.raises(ConfigurationError, match="task_serializer"):
        conf.task_serialiser = "json"
    with pytest.raises(AttributeError):
        _ = conf.worker_prefetch_multiplyer


def test_attribute_and_item_access_and_update():
    conf = Settings({"task_acks_late": True})
    conf.update(worker_prefetch_multiplier=1)
    assert conf.task_acks_late is True and conf["worker_prefetch_multiplier"] == 1
    assert conf.changes() == {"task_acks_late": True, "worker_prefetch_multiplier": 1}
    del conf["task_acks_late"]
    assert conf.task_acks_late is False


def test_mutable_defaults_are_not_shared_between_apps():
    a, b = Settings(), Settings()
    a.broker_transport_options["visibility_timeout"] = 5
    assert b.broker_transport_options == {}


def test_secret_key_from_setting_or_environment(monkeypatch):
    monkeypatch.setenv("NBQUEUE_SECRET_KEY", "from-env")
    assert Settings().secret_key_bytes() == b"from-env"
    assert Settings({"secret_key": "explicit"}).secret_key_bytes() == b"explicit"
    monkeypatch.delenv("NBQUEUE_SECRET_KEY")
    assert Settings().secret_key_bytes() is None
