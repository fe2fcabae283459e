"""Content types: kombu-compatible JSON, signed cloudpickle, opt-in pickle."""

from __future__ import annotations

import datetime
import decimal
import pickle
import uuid

import pytest

from nbqueue import serialization
from nbqueue.exceptions import ContentDisallowed, DecodeError, SecurityError
from tests.captures import envelope_body, load

KEY = b"k" * 32
ACCEPT = serialization.normalize_accept(["json", "cloudpickle"])


def test_json_reads_kombus_rich_types_from_a_real_capture():
    env = load("redis_task_messages.json")["json_types"][0]["envelope"]
    raw = serialization.loads(
        __import__("base64").b64decode(env["body"]), "application/json", accept=ACCEPT
    )
    args, kwargs, _ = raw
    assert args[0] == datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone.utc)
    assert args[1] == uuid.UUID(int=5)
    assert kwargs["d"] == decimal.Decimal("1.5")
    assert envelope_body(env)[0][3] == [1, 2]


def test_json_writes_rich_types_the_way_kombu_does():
    ct, enc, data = serialization.dumps([datetime.date(2024, 1, 2)], "json")
    assert (ct, enc) == ("application/json", "utf-8")
    assert '"__type__": "date"' in data
    assert serialization.loads(data, ct, accept=ACCEPT) == [datetime.date(2024, 1, 2)]


def test_cloudpickle_round_trip_carries_lambdas():
    ct, _, data = serialization.dumps((lambda x: x * 2,), "cloudpickle", key=KEY)
    (fn,) = serialization.loads(data, ct, accept=ACCEPT, key=KEY)
    assert fn(21) == 42


RAN: list[str] = []


def record(what: str) -> None:
    RAN.append(what)


class _Boom:
    """Unpickling this records that code ran: proof a payload was (or was not) unpickled."""

    ran = RAN

    def __reduce__(self):
        return (record, ("unpickled!",))


def test_wrongly_signed_pickle_is_refused_before_unpickling():
    _Boom.ran.clear()
    _, _, data = serialization.dumps(_Boom(), "cloudpickle", key=b"other key")
    with pytest.raises(SecurityError, match="another key"):
        serialization.loads(data, serialization.CLOUDPICKLE, accept=ACCEPT, key=KEY)
    assert _Boom.ran == []


def test_unsigned_pickle_under_our_content_type_is_refused_before_unpickling():
    _Boom.ran.clear()
    with pytest.raises(SecurityError, match="unsigned"):
        serialization.loads(
            pickle.dumps(_Boom()), serialization.CLOUDPICKLE, accept=ACCEPT, key=KEY
        )
    assert _Boom.ran == []


def test_signed_pickle_is_refused_without_a_key():
    _, _, data = serialization.dumps(1, "cloudpickle", key=KEY)
    with pytest.raises(SecurityError, match="no secret key"):
        serialization.loads(data, serialization.CLOUDPICKLE, accept=ACCEPT, key=None)


def test_plain_pickle_is_refused_unless_accepted():
    _Boom.ran.clear()
    data = pickle.dumps(_Boom())
    with pytest.raises(ContentDisallowed, match="refusing to deserialize"):
        serialization.loads(data, serialization.PICKLE, accept=ACCEPT)
    assert _Boom.ran == []
    accept = serialization.normalize_accept(["json", "pickle"])
    serialization.loads(data, serialization.PICKLE, accept=accept)
    assert _Boom.ran == ["unpickled!"]


def test_tampered_payload_fails_the_signature():
    _, _, data = serialization.dumps({"a": 1}, "cloudpickle", key=KEY)
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(SecurityError):
        serialization.loads(tampered, serialization.CLOUDPICKLE, accept=ACCEPT, key=KEY)


def test_garbage_json_is_a_decode_error():
    with pytest.raises(DecodeError):
        serialization.loads(b"{not json", "application/json", accept=ACCEPT)


def test_unknown_serializer_name_is_rejected():
    with pytest.raises(ValueError, match="unknown serializer"):
        serialization.content_type_for("yaml2")


def test_a_cell_task_code_blob_holds_the_plain_function():
    import cloudpickle

    import nbqueue

    app = nbqueue.App("blob")

    def define():
        @app.task(name="twice")
        def twice(x):
            return 2 * x

        return twice

    spec = cloudpickle.loads(define().code_blob())
    assert spec["run"](21) == 42
    assert spec["bind"] is False
