"""JSON for the hot path: orjson when installed, the standard library otherwise.

Why: every chat message is encoded several times (the script's argument, the stored fields, the
ack, the push) and each incoming packet is decoded once; orjson does each several times faster
than ``json``. Output is compact JSON either way, so nothing on the wire changes.

``dumps`` returns ``str``. Values orjson refuses (integers beyond 64 bits, non-string keys) fall
back to ``json``.
"""

from __future__ import annotations

import json as _json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    _orjson = None


if _orjson is not None:
    _OPTS = _orjson.OPT_NON_STR_KEYS

    def dumps(obj: Any, **_ignored: Any) -> str:
        try:
            return _orjson.dumps(obj, option=_OPTS).decode()
        except TypeError:
            return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def loads(text: str | bytes, **_ignored: Any) -> Any:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            return _json.loads(text)  # raises the standard error with its message

else:  # pragma: no cover

    def dumps(obj: Any, **_ignored: Any) -> str:
        return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def loads(text: str | bytes, **_ignored: Any) -> Any:
        return _json.loads(text)


class SocketIOJson:
    """The ``json`` module interface python-socketio's packets use (``dumps(..., separators=)``)."""

    dumps = staticmethod(dumps)
    loads = staticmethod(loads)
