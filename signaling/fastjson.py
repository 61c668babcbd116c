"""JSON for the hot path: orjson when installed, the standard library otherwise.

Why: every chat message is encoded several times (the script's argument, the stored fields, the
ack, the push) and each incoming packet is decoded once; orjson does each several times faster
than ``json``. Output is compact JSON either way, so nothing on the wire changes.

``dumps`` returns ``str``. Values orjson refuses (integers beyond 64 bits, non-string keys) fall
back to ``json``.
"""

from __future__ import annotations

import json as _json
import re
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
        # orjson's error is a json.JSONDecodeError (a ValueError) with the position. Texts orjson
        # refuses but JSON allows (a lone UTF-16 surrogate escape, a number beyond a double) are
        # read by the standard library, so the validator can name the field (``_strict_loads``);
        # too-deep texts are not retried (the standard library recurses in C on them).
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError as exc:
            if "depth" in str(exc) or "recursion" in str(exc).lower():
                raise
            return _strict_loads(text)

else:  # pragma: no cover

    def dumps(obj: Any, **_ignored: Any) -> str:
        return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def loads(text: str | bytes, **_ignored: Any) -> Any:
        return _strict_loads(text)


MAX_NUMBER_DIGITS = 40  # no Segue field needs more; Python refuses to even print 4,300+ digits


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number has {len(text)} digits; at most {MAX_NUMBER_DIGITS} are accepted")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS + 10:
        raise ValueError(f"a number has {len(text)} characters; at most {MAX_NUMBER_DIGITS + 10} are accepted")
    return float(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _strict_loads(text: str | bytes) -> Any:
    """The standard library's JSON reader with numbers bounded and NaN/Infinity refused."""
    try:
        return _json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deep (depth)") from None


# --- nesting depth --------------------------------------------------------------------------------
#
# Why: a payload nested a thousand levels deep costs a recursive walk in every layer that looks at
# it (the size check, the validator, python-socketio's binary scan) and ends in RecursionError,
# i.e. `internal`; orjson itself refuses past 1,024 levels and the standard library recurses in C.
# No Segue payload is deeper than a few levels, so anything deeper than MAX_DEPTH is refused where
# it is decoded, before any handler runs.

MAX_DEPTH = 32


class JsonTooDeep(ValueError):
    """A JSON text nested deeper than the limit (``depth`` levels or more)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested more than {limit} levels deep")
        self.limit = limit


class Unreadable:
    """What :class:`SocketIOJson` decodes an event payload that is not valid JSON to (a number of
    thousands of digits, a broken escape...), so the namespace answers ``invalid`` with ``reason``."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason[:200]

    def __repr__(self) -> str:
        return f"<unreadable JSON: {self.reason}>"


class TooDeep:
    """What :class:`SocketIOJson` decodes a too-deep payload to, so the namespace can answer the
    event (its name and ack id are still known) with ``invalid`` instead of dropping it."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"<JSON nested deeper than {self.limit} levels>"


def depth_exceeds(obj: Any, limit: int) -> bool:
    """Whether ``obj`` (decoded JSON) has containers nested more than ``limit`` levels deep.
    Iterative: never recurses, whatever the input."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def loads_bounded(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """``loads`` that raises :class:`JsonTooDeep` for text nested more than ``limit`` levels.

    Cheap on the hot path: a text with no more than ``limit`` brackets cannot be too deep (two
    C-speed counts); otherwise the decoded value is walked once."""
    if isinstance(text, str):
        brackets = text.count("[") + text.count("{")
    else:
        brackets = text.count(b"[") + text.count(b"{")
    try:
        value = loads(text)
    except RecursionError:  # pragma: no cover - the stdlib fallback without orjson
        raise JsonTooDeep(limit) from None
    except ValueError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            raise JsonTooDeep(limit) from None
        raise
    if brackets > limit and depth_exceeds(value, limit):
        raise JsonTooDeep(limit)
    return value


_EVENT_NAME = re.compile(r'\s*\[\s*"((?:[^"\\]|\\.){0,200})"')


def _socketio_loads(text: str | bytes, **_ignored: Any) -> Any:
    try:
        return loads_bounded(text, SocketIOJson.max_depth)
    except ValueError as exc:
        # keep the event name (an EVENT packet's data is [name, ...]) so the answer can name it
        head = text[:256] if isinstance(text, str) else text[:256].decode("utf-8", "replace")
        match = _EVENT_NAME.match(head)
        marker: Any = TooDeep(exc.limit) if isinstance(exc, JsonTooDeep) else Unreadable(str(exc))
        if match:
            try:
                return [_json.loads(f'"{match.group(1)}"'), marker]
            except ValueError:
                pass
        return marker if head.lstrip()[:1] == "{" else [marker]


def is_too_deep(value: Any) -> bool:
    """Whether a decoded packet payload (or one of its top-level items) is a :class:`TooDeep`."""
    return isinstance(value, TooDeep) or (isinstance(value, list) and any(isinstance(v, TooDeep) for v in value))


def unreadable(value: Any) -> Unreadable | None:
    """The :class:`Unreadable` marker in a decoded packet payload (or its top-level items), if any."""
    if isinstance(value, Unreadable):
        return value
    if isinstance(value, (list, tuple)):
        return next((v for v in value if isinstance(v, Unreadable)), None)
    return None


class SocketIOJson:
    """The ``json`` module interface python-socketio's packets use (``dumps(..., separators=)``).

    ``loads`` refuses nesting deeper than ``max_depth`` (``limits.max_json_depth``): the packet
    still decodes, with the payload replaced by a :class:`TooDeep` marker the namespace answers
    with ``invalid``."""

    max_depth = MAX_DEPTH
    dumps = staticmethod(dumps)
    loads = staticmethod(_socketio_loads)
