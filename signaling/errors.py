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
    def __init__(self, code: str, message: str, field: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s  # rate_limited: when to try again (REST: also Retry-After)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
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
