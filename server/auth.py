"""Stateless credentials: signed tokens, password hashes, site-vouched identities.

Why here: these are pure functions of a secret and some input, used by the REST API (``server``)
and by the Socket.IO namespaces (``signaling``). Who an agent *is* (the account record) lives in
Redis and belongs to ``signaling/agents.py``; this module only signs, verifies and hashes.

- **Tokens** are ``base64url(json payload) "." base64url(HMAC-SHA256(secret, payload))``; the
  payload carries a kind (``v`` visitor, ``a`` agent), a subject and an expiry. Agent tokens also
  carry the account's ``token_version`` so a password change or a deleted account revokes them.
- **Passwords** are hashed with scrypt (``hashlib.scrypt``: N=2^14, r=8, p=1, 16-byte salt).
- **Site identities**: an embedding site signs ``"id|name|email|ts"`` with its secret from
  ``auth.sites``; we check the HMAC in constant time and that ``ts`` is recent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any


class TokenError(Exception):
    """A token is malformed, forged, of the wrong kind, or expired; the message says which."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    kind: str  # "v" visitor, "a" agent
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
        what = "agent" if kind == "a" else "visitor"
        if not isinstance(token, str) or not token or len(token) > 2048 or token.count(".") != 1:
            raise TokenError(f"{what} token is malformed")
        body, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TokenError(f"{what} token signature does not match (issued by another server or altered)")
        try:
            payload = json.loads(_unb64(body))
            claims = TokenClaims(kind=str(payload["k"]), sub=str(payload["s"]), exp=int(payload["e"]),
                                 ver=int(payload.get("n", 0)))
        except (ValueError, KeyError, TypeError):
            raise TokenError(f"{what} token is malformed") from None
        if claims.kind != kind:
            raise TokenError(f"this is not {'an agent' if kind == 'a' else 'a visitor'} token")
        if claims.exp < (now or time.time()):
            raise TokenError(f"{what} token expired" + (": log in again" if kind == "a" else ""))
        return claims


# scrypt parameters: ~16 MiB and a few tens of ms per hash on a current core.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class IdentityError(Exception):
    """A site-vouched identity does not verify; the message says why."""


def sign_identity(secret: str, id: str, name: str = "", email: str = "", ts: int | None = None) -> dict[str, Any]:
    """What an embedding site's server computes (also used by tests and docs)."""
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(secret.encode(), f"{id}|{name}|{email}|{ts}".encode(), hashlib.sha256).hexdigest()
    out: dict[str, Any] = {"id": id, "ts": ts, "sig": sig}
    if name:
        out["name"] = name
    if email:
        out["email"] = email
    return out


def verify_identity(sites: dict[str, str], site: Any, identity: Any, max_age_s: float,
                    now: float | None = None) -> dict[str, str]:
    """Check a site-vouched identity; returns ``{site, id, name, email}``."""
    if not isinstance(site, str) or site not in sites:
        raise IdentityError(f"unknown site {site!r}: it must be one of the sites configured in auth.sites")
    if not isinstance(identity, dict):
        raise IdentityError("identity must be an object {id, name?, email?, ts, sig}")
    extra = set(identity) - {"id", "name", "email", "ts", "sig"}
    if extra:
        raise IdentityError(f"identity has unknown field {sorted(extra)[0]!r}")
    ident, name, email = identity.get("id"), identity.get("name", ""), identity.get("email", "")
    ts, sig = identity.get("ts"), identity.get("sig")
    for field_name, value, limit in (("id", ident, 256), ("name", name, 256), ("email", email, 320)):
        if not isinstance(value, str) or len(value) > limit or "|" in value:
            raise IdentityError(f"identity.{field_name} must be text of at most {limit} characters without '|'")
    if not ident:
        raise IdentityError("identity.id must not be empty")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise IdentityError("identity.ts must be a whole number (unix seconds)")
    if not isinstance(sig, str):
        raise IdentityError("identity.sig must be a hex string")
    expected = hmac.new(sites[site].encode(), f"{ident}|{name}|{email}|{ts}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sig.lower(), expected):
        raise IdentityError("identity signature does not match (check the site secret and the signed text id|name|email|ts)")
    age = (now or time.time()) - ts
    if age > max_age_s:
        raise IdentityError(f"identity expired: signed {int(age)} s ago, accepted for {int(max_age_s)} s")
    if age < -300:
        raise IdentityError("identity ts is in the future (check the site's clock)")
    return {"site": site, "id": ident, "name": name, "email": email}
