"""Access to the real Celery 5.7 captures (golden test data) in ../shared/reference."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

CAPTURES = Path(
    os.environ.get(
        "NBQUEUE_CAPTURES",
        Path(__file__).resolve().parents[2] / "shared" / "reference" / "celery-captures",
    )
)
LOCAL = Path(__file__).parent / "golden"


def load(name: str) -> Any:
    """A capture file: the copy kept in tests/golden, else the shared reference."""
    for folder in (LOCAL, CAPTURES):
        path = folder / name
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


def envelope_body(envelope: dict[str, Any]) -> Any:
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return json.loads(body)


def load_lines(name: str) -> list[Any]:
    """A JSON-lines capture (e.g. a decoded Redis MONITOR), one document per line."""
    for folder in (LOCAL, CAPTURES):
        path = folder / name
        if path.exists():
            return [json.loads(line) for line in path.read_text().splitlines() if line]
    raise FileNotFoundError(name)
