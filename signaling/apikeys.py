"""API keys for servers (a CRM, a bot, a data warehouse) and the scopes that say what a caller may do.

A key is shown once, at creation, as ``sgk_<id>_<secret>``; Redis keeps only the SHA-256 of the
secret, in the hash ``P apikey:<id>`` (name, scopes, who made it and when, when it was last used)
with ``P apikeys`` listing the ids. Revoking deletes the record: the key stops working at once.

Why SHA-256 and not scrypt (which agent passwords use): the secret is 256 random bits, so there
is nothing to guess that a slow hash would protect, while every API request checks a key and a
slow hash would cost tens of milliseconds of CPU each time. A stolen Redis dump still gives no
usable key. The comparison is constant-time.

Why the last use is written at most once a minute: it is for people ("is this key still used?"),
and writing on every request would turn each read into a write.

Scopes are shared with agent tokens: an agent's role implies a set of scopes
(:func:`scopes_for_role`), so one check (``server.rest.authorize``) serves both kinds of caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from .errors import ProtocolError, invalid, not_found
from .store import Keys

# What a key can be given. Managing API keys is not among them: only an admin's token does that.
SCOPES = ("conversations:read", "conversations:write", "customers:read", "webhooks:manage", "agents:manage")
MANAGE_KEYS = "apikeys:manage"

_AGENT = frozenset({"conversations:read", "conversations:write", "customers:read"})
_ROLE_SCOPES = {
    "agent": _AGENT,
    "supervisor": _AGENT | {"agents:manage"},
    "admin": frozenset(SCOPES) | {MANAGE_KEYS},
}

PREFIX = "sgk_"
KEY_RE = re.compile(r"^sgk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,128})$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$")
LAST_USED_EVERY_MS = 60_000
MAX_KEYS = 1000

# the last use is written only while the record exists: a revoke at the same moment wins
_TOUCH = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_used_ts', ARGV[1]) end"


def scopes_for_role(role: str) -> frozenset[str]:
    """The scopes an agent token carries: agents read and write the conversations their access
    rules allow, supervisors also manage agents, admins hold every scope and manage API keys."""
    return _ROLE_SCOPES.get(role, _AGENT)


def check_scopes(scopes: list[str], where: str = "scopes") -> list[str]:
    if not scopes:
        raise invalid(where, f"give at least one scope (one of {', '.join(SCOPES)})")
    for i, scope in enumerate(scopes):
        if scope not in SCOPES:
            raise invalid(f"{where}[{i}]", f"unknown scope {scope!r} (known: {', '.join(SCOPES)})")
    return sorted(set(scopes), key=SCOPES.index)


def check_name(name: str, where: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise invalid(where, "must be 1 to 64 letters, digits, spaces or _ . : - (starting with a letter or digit)")
    return name


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class ApiKey:
    """One key's record (never its secret)."""

    id: str
    name: str
    scopes: list[str] = field(default_factory=list)
    created_ts: int = 0
    created_by: str = ""
    last_used_ts: int | None = None
    secret_sha256: str = ""

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "scopes": list(self.scopes),
                               "created_ts": self.created_ts, "created_by": self.created_by,
                               "last_used_ts": self.last_used_ts}
        return out

    @classmethod
    def from_hash(cls, key_id: str, h: dict[str, str]) -> "ApiKey":
        used = h.get("last_used_ts")
        return cls(id=key_id, name=h.get("name") or key_id, scopes=json.loads(h.get("scopes") or "[]"),
                   created_ts=int(h.get("created_ts") or 0), created_by=h.get("created_by") or "",
                   last_used_ts=int(used) if used else None, secret_sha256=h.get("secret_sha256") or "")


class ApiKeys:
    """API keys in Redis: create (the secret is returned once), list, revoke, authenticate."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._touch = redis.register_script(_TOUCH)

    def _key(self, key_id: str) -> str:
        return self.keys.api_key(key_id)

    async def create(self, name: str, scopes: list[str], by: str) -> tuple[ApiKey, str]:
        """A new key; returns it with the full token ``sgk_<id>_<secret>`` (not stored anywhere)."""
        check_name(name)
        scopes = check_scopes(scopes)
        if await self.redis.scard(self.keys.api_keys) >= MAX_KEYS:
            raise ProtocolError("conflict", f"there are already {MAX_KEYS} API keys: revoke unused ones first")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(id=key_id, name=name, scopes=scopes, created_ts=int(time.time() * 1000), created_by=by,
                     secret_sha256=_digest(secret))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(key_id), mapping={
                "name": key.name, "scopes": json.dumps(key.scopes), "created_ts": str(key.created_ts),
                "created_by": by, "secret_sha256": key.secret_sha256})
            pipe.sadd(self.keys.api_keys, key_id)
            await pipe.execute()
        return key, f"{PREFIX}{key_id}_{secret}"

    async def get(self, key_id: str) -> ApiKey | None:
        if not re.fullmatch(r"[0-9a-f]{16}", key_id or ""):
            return None
        h = await self.redis.hgetall(self._key(key_id))
        return ApiKey.from_hash(key_id, h) if h else None

    async def list(self) -> list[ApiKey]:
        ids = sorted(await self.redis.smembers(self.keys.api_keys))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(self._key(key_id))
            rows = await pipe.execute()
        keys = [ApiKey.from_hash(i, h) for i, h in zip(ids, rows) if h]
        return sorted(keys, key=lambda k: (k.created_ts, k.id))

    async def revoke(self, key_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(key_id))
            pipe.srem(self.keys.api_keys, key_id)
            removed, _ = await pipe.execute()
        if not removed:
            raise not_found(f"API key {key_id!r}")

    async def authenticate(self, token: str, now_ms: int | None = None) -> ApiKey:
        """The key for ``token``, or ``bad_token``. Records the use (at most once a minute)."""
        match = KEY_RE.match(token)
        if match is None:
            raise ProtocolError("bad_token", "malformed API key: it looks like sgk_<16 hex digits>_<secret>")
        key_id, secret = match.group(1), match.group(2)
        key = await self.get(key_id)
        # compare even for an unknown id, so timing does not tell which ids exist
        stored = key.secret_sha256 if key is not None else "0" * 64
        if not hmac.compare_digest(_digest(secret), stored) or key is None:
            raise ProtocolError("bad_token", "unknown or revoked API key")
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if key.last_used_ts is None or now_ms - key.last_used_ts >= LAST_USED_EVERY_MS:
            await self._touch(keys=[self._key(key_id)], args=[str(now_ms)])
            key.last_used_ts = now_ms
        return key
