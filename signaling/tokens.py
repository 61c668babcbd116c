"""Signed tokens: what a visitor keeps across visits and what an agent carries after logging in.

Why here: every node checks them (the Socket.IO namespaces and the REST API), they are pure
functions of the node secret, and ``signaling`` owns who may do what; ``server`` only imports them.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256(secret, payload))``; the payload
carries a kind (``v`` visitor, ``a`` agent, ``n`` a node's request to another), a subject and an expiry. Agent tokens also carry the
account's ``token_version`` and the account's id (never reused: ``agents.py``), so a password or
role change, a logout or a deleted (and re-created) account revokes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any


class TokenError(Exception):
    """A token is malformed, forged, of the wrong kind, or expired; the message says which."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# kind -> what a message calls it ("n": one node's request to another, signaling/recordings.py)
_KIND_NAMES = {"a": "agent", "v": "visitor", "n": "node-to-node"}


@dataclass(frozen=True)
class TokenClaims:
    kind: str  # "v" visitor, "a" agent, "n" node-to-node
    sub: str
    exp: int
    ver: int = 0


class Signer:
    """Signs and verifies Segue's tokens with the node secret (shared by every node)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"segue-token:" + secret).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:24])

    def sign(self, kind: str, sub: str, ttl_s: float, ver: int = 0, now: float | None = None) -> str:
        payload: dict[str, Any] = {"k": kind, "s": sub, "e": int((now or time.time()) + ttl_s)}
        if ver:
            payload["n"] = ver
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: Any, kind: str, now: float | None = None) -> TokenClaims:
        what = _KIND_NAMES.get(kind, "visitor")
        if not isinstance(token, str) or not token or len(token) > 2048 or token.count(".") != 1:
            raise TokenError(f"{what} token is malformed")
        body, mac = token.split(".")
        if not token.isascii():  # base64url only; compare_digest refuses other text
            raise TokenError(f"{what} token is malformed (it holds characters a token never has)")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TokenError(f"{what} token signature does not match (issued by another server or altered)")
        try:
            payload = json.loads(_unb64(body))
            claims = TokenClaims(kind=str(payload["k"]), sub=str(payload["s"]), exp=int(payload["e"]),
                                 ver=int(payload.get("n", 0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenError(f"{what} token is malformed") from None
        if claims.kind != kind:
            raise TokenError(f"this is not {'an' if what[0] in 'aeiou' else 'a'} {what} token")
        if claims.exp < (now or time.time()):
            raise TokenError(f"{what} token expired" + (": log in again" if kind == "a" else ""))
        return claims
