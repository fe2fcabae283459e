"""The result listener reads a published meta's status from its first bytes when it can."""

from __future__ import annotations

import pytest

from nbqueue.backends.redis_listener import _ready_state


@pytest.mark.parametrize(
    ("raw", "ready"),
    [
        (b'{"status": "SUCCESS", "result": 1, "task_id": "x"}', True),  # Celery's and ours
        (b'{"status": "FAILURE", "result": {}}', True),
        (b'{"status": "REVOKED"}', True),
        (b'{"status": "STARTED", "result": {"pid": 1}}', False),
        (b'{"status": "PROGRESS", "result": {"current": 2}}', False),
        (b'{"result": 1, "status": "SUCCESS"}', True),  # another key order: parsed in full
        (b'{"status":"SUCCESS"}', True),  # compact separators: parsed in full
        (b'{"status": "SUC\\u0043ESS"}', True),  # an escape: parsed in full
        (b'{"status": "SUCCESS\\"", "result": 1}', False),  # not a ready state once unescaped
        (b'{"status": "SUCCESS', False),  # truncated
        (b"[1, 2]", False),
        (b"not json", False),
        (b'{"status": 3}', False),
    ],
)
def test_the_ready_state_of_a_published_meta(raw: bytes, ready: bool) -> None:
    assert _ready_state(raw) is ready
