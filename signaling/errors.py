"""The one error type of the protocol: a code, a message a person can act on, and maybe a field.

Every failure a client can cause ends up as ``ProtocolError`` and is answered as
``{ok: false, error: {code, message, field?}}`` (Socket.IO) or ``{error: {...}}`` with an HTTP
status (REST). Codes are listed in docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

# code -> HTTP status, for the REST API
HTTP_STATUS = {
    "invalid": 400,
    "bad_json": 400,
    "unauthorized": 401,
    "bad_token": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unknown_event": 400,
    "unavailable": 503,
    "internal": 500,
}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None, retry_after_s: int | None = None,
                 retry_after_ms: int | None = None) -> None:
        if not message.isascii():  # it may quote client input: keep it sendable (no lone surrogates)
            message = message.encode("utf-8", "replace").decode("utf-8")
        if field is not None and not field.isascii():
            field = field.encode("utf-8", "replace").decode("utf-8")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s  # rate_limited: when to try again (REST: also Retry-After)
        # rate_limited events (signaling.limits): the same, to the millisecond; implies retry_after_s
        self.retry_after_ms = retry_after_ms
        if retry_after_ms is not None and retry_after_s is None:
            self.retry_after_s = max(1, -(-retry_after_ms // 1000))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
        if self.retry_after_ms is not None:
            out["retry_after_ms"] = self.retry_after_ms
        return out

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)


def invalid(field: str, message: str) -> ProtocolError:
    return ProtocolError("invalid", f"{field}: {message}", field)


def not_found(what: str) -> ProtocolError:
    return ProtocolError("not_found", f"{what} does not exist")


def forbidden(message: str) -> ProtocolError:
    return ProtocolError("forbidden", message)


def conflict(message: str) -> ProtocolError:
    return ProtocolError("conflict", message)


# --- unexpected exceptions: logged once, then counted ----------------------------------------------
#
# Why: an exception a client's input provokes can be provoked again and again; a traceback per
# request floods the log (and its disk). The first of a kind (same place, type and line) is logged
# with its traceback; repeats are one short line at the 10th, 100th, 1,000th... occurrence.

_SEEN: dict[tuple[str, str, str], int] = {}
_SEEN_MAX = 1000


def log_unexpected(logger: Any, where: str, exc: BaseException) -> None:
    """Log ``exc`` (raised while handling ``where``, e.g. ``"message.send on /customer"``) boundedly."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    line = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    where = where[:120]
    key = (where, type(exc).__name__, line)
    if len(_SEEN) >= _SEEN_MAX and key not in _SEEN:
        _SEEN.clear()
    count = _SEEN.get(key, 0) + 1
    _SEEN[key] = count
    text = str(exc)[:200].encode("utf-8", "replace").decode("utf-8")
    if count == 1:
        logger.error("%s failed: %s: %s (repeats are counted, not logged)", where, type(exc).__name__, text,
                     exc_info=exc)
    elif count in (10, 100, 1000) or count % 10000 == 0:
        logger.error("%s failed %d times: %s at %s", where, count, type(exc).__name__, line)
