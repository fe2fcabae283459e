"""Content types nbqueue reads and writes: JSON (kombu's rules), signed cloudpickle, opt-in pickle.

* ``json`` — kombu's JSON, with its ``{"__type__", "__value__"}`` wrapping of datetimes,
  UUIDs, decimals and bytes, so Celery reads what we write and the other way round.
* ``cloudpickle`` — our own content type for code a worker cannot import (notebook cells,
  lambdas, closures). The payload is HMAC-SHA256-signed with the app's secret key and the
  signature is checked *before* anything is unpickled.
* ``pickle`` — plain pickle, only when the user lists it in ``accept_content``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any

import cloudpickle
from kombu.utils import json as kombu_json

from .exceptions import ContentDisallowed, DecodeError, SecurityError

__all__ = [
    "CLOUDPICKLE",
    "JSON",
    "PICKLE",
    "content_type_for",
    "dumps",
    "loads",
    "normalize_accept",
    "sign",
    "unsign",
]

JSON = "application/json"
CLOUDPICKLE = "application/x-nbqueue-cloudpickle"
PICKLE = "application/x-python-serialize"

_NAMES = {"json": JSON, "cloudpickle": CLOUDPICKLE, "pickle": PICKLE}
_MAGIC = b"NBQ1"
_DIGEST = hashlib.sha256
_SIGLEN = _DIGEST().digest_size


def content_type_for(name: str) -> str:
    """The MIME type for a serializer name (``json``) or a MIME type itself."""
    if name in _NAMES:
        return _NAMES[name]
    if name in _NAMES.values():
        return name
    raise ValueError(f"unknown serializer {name!r}; use one of {sorted(_NAMES)}")


def normalize_accept(names: Any) -> frozenset[str]:
    """``accept_content`` as a set of MIME types."""
    return frozenset(content_type_for(n) for n in names)


_keyed: dict[bytes, hmac.HMAC] = {}


def _mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256, from a keyed state prepared once per key (OpenSSL setup is the slow part)."""
    base = _keyed.get(key)
    if base is None:
        base = _keyed[key] = hmac.new(key, digestmod=_DIGEST)
    mac = base.copy()
    mac.update(data)
    return mac.digest()


def sign(data: bytes, key: bytes) -> bytes:
    """``NBQ1`` + HMAC-SHA256(key, data) + data."""
    return _MAGIC + _mac(key, data) + data


def unsign(blob: bytes, key: bytes | None) -> bytes:
    """The data inside a signed blob; `SecurityError` unless `key` signed it."""
    if key is None:
        raise SecurityError(
            "refusing a signed pickle: this app has no secret key "
            "(set the 'secret_key' setting or NBQUEUE_SECRET_KEY to the sender's key)"
        )
    if not isinstance(blob, (bytes, bytearray)) or blob[:4] != _MAGIC:
        raise SecurityError("refusing an unsigned pickle payload")
    signature, data = blob[4 : 4 + _SIGLEN], blob[4 + _SIGLEN :]
    expected = _mac(key, data)
    if not hmac.compare_digest(signature, expected):
        raise SecurityError(
            "refusing a pickle signed with another key "
            "(the sender's secret_key/NBQUEUE_SECRET_KEY differs from this app's)"
        )
    return bytes(data)


def _json_dumps(obj: Any) -> str:
    try:
        return json.dumps(obj)
    except TypeError:  # datetimes, UUIDs, Decimals, bytes...: kombu's wrapping
        return kombu_json.dumps(obj)


def _json_loads(data: str | bytes) -> Any:
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    if '"__type__"' in data:
        return kombu_json.loads(data)
    return json.loads(data)


def dumps(obj: Any, serializer: str, *, key: bytes | None = None) -> tuple[str, str, Any]:
    """Serialize `obj`; returns ``(content_type, content_encoding, payload)``."""
    content_type = content_type_for(serializer)
    if content_type == JSON:
        return JSON, "utf-8", _json_dumps(obj)
    if content_type == CLOUDPICKLE:
        if key is None:
            raise SecurityError("cannot sign a pickle: this app has no secret key")
        return CLOUDPICKLE, "binary", sign(cloudpickle.dumps(obj), key)
    return PICKLE, "binary", pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads(
    payload: Any,
    content_type: str | None,
    *,
    accept: frozenset[str],
    key: bytes | None = None,
) -> Any:
    """Deserialize a payload, refusing content types not in `accept` before decoding them."""
    content_type = content_type or JSON
    if content_type not in accept:
        raise ContentDisallowed(
            f"refusing to deserialize content of type {content_type!r}: "
            f"accept_content allows only {sorted(accept)}"
        )
    if content_type == JSON:
        try:
            return _json_loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"malformed JSON body: {exc}") from exc
    if isinstance(payload, str):
        payload = payload.encode("latin-1")
    if content_type == CLOUDPICKLE:
        data = unsign(payload, key)
    elif content_type == PICKLE:
        data = payload
    else:
        raise ContentDisallowed(f"no decoder for content type {content_type!r}")
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise DecodeError(f"cannot unpickle the body: {exc!r}") from exc
