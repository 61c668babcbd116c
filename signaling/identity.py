"""Site-vouched customer identities: an embedding site signs ``"id|name|email|ts"`` with its secret
from ``auth.sites``; we check the HMAC in constant time and that ``ts`` is recent.

Why here: the ``/customer`` namespace resolves a connecting customer with it (``Signaling.customer_session``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any


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
        if any("\ud800" <= ch <= "\udfff" for ch in value):  # not Unicode text: cannot be signed or stored
            raise IdentityError(f"identity.{field_name} must be Unicode text (it holds a lone UTF-16 surrogate)")
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
