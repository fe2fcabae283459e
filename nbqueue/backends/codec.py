"""Result metas as bytes: Celery's JSON, with a signed-cloudpickle escape for other values.

A meta is always a JSON document Celery can read (kombu's JSON rules, Celery's key
order). A field whose value JSON cannot hold — a notebook task returning a NumPy array
or an object of a class defined in a cell — is stored as a *marker* instead::

    {"__nbqueue__": "application/x-nbqueue-cloudpickle", "value": "<base64>"}

where ``value`` is the cloudpickled value, HMAC-signed with the app's secret key
(``nbqueue.serialization``). Only nbqueue reads markers: a reader whose key differs, or
whose ``result_accept_content`` (else ``accept_content``) lacks ``cloudpickle``, gets a
clear error instead of the value; Celery clients see the marker as a plain dict. With
``result_serializer="cloudpickle"`` every ``result`` is stored this way.
"""

from __future__ import annotations

import base64
from typing import Any

from .. import serialization
from ..exceptions import ConfigurationError, DecodeError

__all__ = ["MARKER", "MetaCodec"]

#: the key that marks a value stored as signed cloudpickle
MARKER = "__nbqueue__"
_SERIALIZERS = ("json", "cloudpickle")
_JSON_ONLY = frozenset({serialization.JSON})  # the meta document itself is always JSON


def _json(value: Any) -> str:
    return serialization.dumps(value, "json")[2]


class MetaCodec:
    """Encodes metas and chord parts for one app (its key, serializer and accepted types)."""

    def __init__(self, app: Any) -> None:
        conf = app.conf
        serializer = conf.result_serializer
        if serializer not in _SERIALIZERS:
            raise ConfigurationError(
                f"result_serializer {serializer!r} cannot be stored in Redis; "
                f"use one of {list(_SERIALIZERS)}"
            )
        self.app = app
        self.always_pickle = serializer == "cloudpickle"
        self.accept = serialization.normalize_accept(
            conf.result_accept_content or conf.accept_content
        )

    # values ----------------------------------------------------------------------------
    def pack(self, value: Any) -> Any:
        """A value as JSON-able data: itself, a result's tuple form, or a signed marker."""
        if hasattr(value, "as_tuple"):  # a task returning an AsyncResult/GroupResult
            return value.as_tuple()
        try:
            _json(value)
        except (TypeError, ValueError):
            return self.marker(value)
        return value

    def marker(self, value: Any) -> dict[str, str]:
        """`value` as signed cloudpickle inside a JSON marker."""
        content_type, _, blob = serialization.dumps(value, "cloudpickle", key=self.app.secret_key)
        return {MARKER: content_type, "value": base64.b64encode(blob).decode("ascii")}

    def unpack(self, value: Any) -> Any:
        """The value a `pack`ed value stands for (a marker is verified, then unpickled)."""
        if isinstance(value, dict) and MARKER in value and len(value) == 2:
            blob = base64.b64decode(value["value"])
            return serialization.loads(
                blob, value[MARKER], accept=self.accept, key=self.app.secret_key
            )
        return value

    # metas -----------------------------------------------------------------------------
    def encode(self, meta: dict[str, Any]) -> str:
        """JSON in Celery's key order (``task_id`` last); non-JSON fields become markers."""
        if "task_id" in meta and next(reversed(meta)) != "task_id":
            task_id = meta["task_id"]
            meta = {k: v for k, v in meta.items() if k != "task_id"}
            meta["task_id"] = task_id
        result = meta.get("result")
        if self.always_pickle and "result" in meta:
            meta = {**meta, "result": self.marker(result)}
        elif hasattr(result, "as_tuple"):  # a task returning an AsyncResult/GroupResult
            meta = {**meta, "result": result.as_tuple()}
        try:  # the common case, JSON as it is: encoded once (no trial encoding of the result)
            return _json(meta)
        except (TypeError, ValueError):  # a result or args/kwargs JSON cannot hold: markers
            return _json({k: self.pack(v) for k, v in meta.items()})

    def decode(self, raw: bytes | str) -> dict[str, Any]:
        """A stored meta, with markers turned back into values and Celery's defaults filled."""
        meta = serialization.loads(raw, serialization.JSON, accept=_JSON_ONLY)
        if not isinstance(meta, dict):
            raise DecodeError(f"a result meta is a JSON object, not {type(meta).__name__}")
        for key, value in meta.items():  # values replaced in place: no new dict per meta
            if isinstance(value, dict) and MARKER in value:
                meta[key] = self.unpack(value)
        meta.setdefault("result", None)
        meta.setdefault("traceback", None)
        meta.setdefault("children", [])
        meta.setdefault("date_done", None)
        return meta

    # chord parts -------------------------------------------------------------------------
    def encode_part(self, task_id: str, state: str, value: Any) -> str:
        """A chord header result as Celery's ``[1, task_id, state, result]``."""
        return _json([1, task_id, state, self.pack(value)])

    def decode_part(self, raw: bytes | str) -> tuple[str, str, Any]:
        """``(task_id, state, value)`` of an encoded chord header result."""
        _, task_id, state, value = serialization.loads(raw, serialization.JSON, accept=_JSON_ONLY)
        return task_id, state, self.unpack(value)
