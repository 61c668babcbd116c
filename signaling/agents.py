"""Agent accounts and the team's canned replies, in Redis.

An account is the hash ``P acct:<id>`` with the username, display name, role (``agent``,
``supervisor`` or ``admin``), skills, per-channel capacity, channels, the scrypt password hash, a
``token_version`` (bumped on a password or role change and on logout: older tokens stop working)
and the presence the agent last chose (restored when they reconnect). ``P accts`` lists the ids.

**Ids are never reused.** The id is the username for its first account, ``<username>:<n>`` for a
username created again after a deletion (``P acct_gen:<username>`` counts creations and deletions
and is never reset; ``P acct_names`` maps a username to its current id). Tokens, routing, rooms
and every access record (a conversation's ``seen`` agents, a customer's agents, grants) hold the
id, so a re-created username is a new account: no old tokens, no history, no customers.

**Sessions follow credentials.** A change that ends an account's tokens (password, role, logout,
deletion) is published on ``P sessions:ended`` (the account id); every node disconnects that
account's sockets whose token is no longer valid (``Signaling``). The CLI publishes the same way.

Canned replies are one hash ``P canned``: id -> JSON ``{id, title, text}``. Placeholders such as
``{customer.name}`` are filled by :func:`render`; unknown ones are left as they are.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from .errors import ProtocolError, conflict, not_found
from .passwords import hash_password, verify_password
from .store import Keys

# an account id: the username, or "<username>:<n>" for a username created again
ACCOUNT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}(:[0-9]{1,9})?$")
ROLES = ("agent", "supervisor", "admin")  # each includes the rights of the ones before it
PRESENCES = ("available", "away", "offline")


@dataclass
class Account:
    id: str
    name: str
    role: str = "agent"
    skills: list[str] = field(default_factory=list)
    capacity: dict[str, int] = field(default_factory=lambda: {"chat": 3})
    channels: list[str] = field(default_factory=list)
    presence: str = "available"
    token_version: int = 1
    password_hash: str = ""
    created_ts: int = 0
    username: str = ""  # what the person logs in with ("" in old records: the id)
    locale: str = ""  # the language the person chose for the console and wallboard ("": their browser's)

    def __post_init__(self) -> None:
        if not self.username:
            self.username = self.id.split(":", 1)[0]

    @property
    def is_supervisor(self) -> bool:
        """Supervisors and admins: every conversation, the wallboard, agents and canned replies."""
        return self.role in ("supervisor", "admin")

    @property
    def is_admin(self) -> bool:
        """Admins: what supervisors may, plus the server's keys and settings (API keys, webhooks)."""
        return self.role == "admin"

    @property
    def effective_channels(self) -> list[str]:
        return self.channels or [c for c, n in self.capacity.items() if n > 0]

    def public(self, presence: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "role": self.role,
            "skills": list(self.skills),
            "capacity": dict(self.capacity),
            "channels": self.effective_channels,
            "presence": presence or self.presence,
            "locale": self.locale or None,
        }

    def brief(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}

    @classmethod
    def from_hash(cls, agent_id: str, h: dict[str, str]) -> "Account":
        return cls(
            id=agent_id,
            name=h.get("name") or agent_id,
            role=h.get("role") or "agent",
            skills=json.loads(h.get("skills") or "[]"),
            capacity=json.loads(h.get("capacity") or "{}"),
            channels=json.loads(h.get("channels") or "[]"),
            presence=h.get("presence") or "available",
            token_version=int(h.get("token_version") or 1),
            password_hash=h.get("password") or "",
            created_ts=int(h.get("created_ts") or 0),
            username=h.get("username") or "",
            locale=h.get("locale") or "",
        )

    def to_hash(self) -> dict[str, str]:
        return {
            "name": self.name,
            "role": self.role,
            "skills": json.dumps(self.skills),
            "capacity": json.dumps(self.capacity),
            "channels": json.dumps(self.channels),
            "presence": self.presence,
            "token_version": str(self.token_version),
            "password": self.password_hash,
            "created_ts": str(self.created_ts),
            "username": self.username,
            "locale": self.locale,
        }


def parse_capacity(text: str) -> dict[str, int]:
    """``"chat=3,voice=1"`` -> ``{"chat": 3, "voice": 1}`` (for the CLI)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not re.match(r"^[a-z][a-z0-9_-]{0,31}$", name.strip()) or not value.strip().isdigit():
            raise ValueError(f"capacity must look like chat=3,voice=1 (got {part!r})")
        out[name.strip()] = int(value)
    return out


def check_channels(channels: list[str] | None, capacity: dict[str, int]) -> None:
    for ch in channels or []:
        if capacity.get(ch, 0) < 1:
            raise ProtocolError("invalid", f"channels: {ch!r} needs a capacity of 1 or more "
                                           f"(capacity.{ch})", "channels")


class Directory:
    """Agent accounts in Redis."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.names = f"{prefix}acct_names"  # username -> current account id
        self.sessions_channel = f"{prefix}sessions:ended"

    def _generation(self, username: str) -> str:
        return f"{self.keys.p}acct_gen:{username}"

    async def get(self, agent_id: str) -> Account | None:
        """The account with exactly this id (a token's subject, a routing record): never another
        account that took the same username later."""
        if not isinstance(agent_id, str) or not ACCOUNT_ID_RE.match(agent_id):
            return None  # e.g. "ada:convs" would name another key
        h = await self.redis.hgetall(self.keys.account(agent_id))
        return Account.from_hash(agent_id, h) if h else None

    async def find(self, name: str) -> Account | None:
        """The current account of a username (or an account id): what a person types."""
        account = await self.get(name)
        if account is not None or not name or ":" in name or len(name) > 64:
            return account
        current = await self.redis.hget(self.names, name)
        return await self.get(current) if current and current != name else None

    async def require(self, agent_id: str) -> Account:
        account = await self.find(agent_id)
        if account is None:
            raise not_found(f"agent {agent_id!r}")
        return account

    async def _ended(self, agent_id: str) -> None:
        """Tell every node that this account's older tokens ended (they disconnect its sockets)."""
        await self.redis.publish(self.sessions_channel, agent_id)

    async def revoke(self, agent_id: str) -> int:
        """Log out everywhere: the account's tokens so far stop working. Returns the new version (0: no account)."""
        version = await self.redis.eval(
            "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HINCRBY', KEYS[1], 'token_version', 1) end"
            " return 0", 1, self.keys.account(agent_id))
        if version:
            await self._ended(agent_id)
        return int(version)

    async def list(self) -> list[Account]:
        ids = sorted(await self.redis.smembers(self.keys.accounts))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hgetall(self.keys.account(agent_id))
            rows = await pipe.execute()
        return [Account.from_hash(i, h) for i, h in zip(ids, rows) if h]

    async def create(self, username: str, password: str | None, name: str | None = None, role: str = "agent",
                     skills: list[str] | None = None, capacity: dict[str, int] | None = None,
                     channels: list[str] | None = None, password_hash: str | None = None) -> Account:
        if role not in ROLES:
            raise ProtocolError("invalid", f"role must be one of {', '.join(ROLES)}", "role")
        check_channels(channels, capacity if capacity is not None else {"chat": 3})
        if await self.find(username) is not None:
            raise conflict(f"agent {username!r} already exists")
        generation = await self.redis.incr(self._generation(username))
        agent_id = username if generation == 1 else f"{username}:{generation}"
        account = Account(
            id=agent_id,
            username=username,
            name=name or username,
            role=role,
            skills=sorted(set(skills or [])),
            capacity=dict(capacity) if capacity is not None else {"chat": 3},
            channels=list(channels or []),
            # scrypt takes tens of ms: off the event loop
            password_hash=password_hash or await asyncio.to_thread(hash_password, password or ""),
            created_ts=int(time.time() * 1000),
        )
        key = self.keys.account(agent_id)
        # HSETNX on the username first: two creators racing get one winner.
        if not await self.redis.hsetnx(self.names, username, agent_id):
            raise conflict(f"agent {username!r} already exists")
        if not await self.redis.hsetnx(key, "name", account.name):
            raise conflict(f"agent {username!r} already exists")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=account.to_hash())
            pipe.sadd(self.keys.accounts, agent_id)
            await pipe.execute()
        return account

    async def update(self, agent_id: str, *, password: str | None = None, name: str | None = None,
                     role: str | None = None, skills: list[str] | None = None,
                     capacity: dict[str, int] | None = None, channels: list[str] | None = None,
                     presence: str | None = None, locale: str | None = None) -> Account:
        account = await self.get(agent_id)
        if account is None:
            raise not_found(f"agent {agent_id!r}")
        fields: dict[str, str] = {}
        ends_sessions = password is not None or (role is not None and role != account.role)
        if password is not None:
            account.password_hash = await asyncio.to_thread(hash_password, password)
            fields["password"] = account.password_hash
        if ends_sessions:
            account.token_version += 1
            fields["token_version"] = str(account.token_version)
        if name is not None:
            account.name = fields["name"] = name
        if role is not None:
            if role not in ROLES:
                raise ProtocolError("invalid", f"role must be one of {', '.join(ROLES)}", "role")
            account.role = fields["role"] = role
        if skills is not None:
            account.skills = sorted(set(skills))
            fields["skills"] = json.dumps(account.skills)
        if capacity is not None:
            account.capacity = dict(capacity)
            fields["capacity"] = json.dumps(account.capacity)
        if channels is not None:
            account.channels = list(channels)
            fields["channels"] = json.dumps(account.channels)
        if presence is not None:
            account.presence = fields["presence"] = presence
        if locale is not None:
            account.locale = fields["locale"] = locale  # "" forgets the choice
        if channels is not None or capacity is not None:
            check_channels(account.channels, account.capacity)
        if fields:
            # only if it still exists (a concurrent delete wins)
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(self.keys.account(agent_id))
                    if not await pipe.exists(self.keys.account(agent_id)):
                        raise not_found(f"agent {agent_id!r}")
                    pipe.multi()
                    pipe.hset(self.keys.account(agent_id), mapping=fields)
                    await pipe.execute()
            except WatchError:
                raise conflict(f"agent {agent_id!r} was changed at the same time: try again") from None
        if ends_sessions:
            await self._ended(agent_id)
        return account

    async def delete(self, agent_id: str) -> Account:
        """Delete the account with this id; its username may be created again, as a new account."""
        account = await self.get(agent_id)
        if account is None:
            raise not_found(f"agent {agent_id!r}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.account(agent_id))
            pipe.srem(self.keys.accounts, agent_id)
            pipe.incr(self._generation(account.username))  # the next account of this username gets a new id
            removed, _, _ = await pipe.execute()
        if not removed:
            raise not_found(f"agent {agent_id!r}")
        # the username is free again (unless a new account already took it)
        await self.redis.eval("if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then"
                              " return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
                              1, self.names, account.username, agent_id)
        await self._ended(agent_id)
        return account

    async def authenticate(self, username: str, password: str) -> Account | None:
        account = await self.find(username.strip().lower())
        if account is None:
            # same work as a real check, so timing does not tell which usernames exist
            await asyncio.to_thread(verify_password, password, _DUMMY_HASH)
            return None
        ok = await asyncio.to_thread(verify_password, password, account.password_hash)
        return account if ok else None


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\.([a-z_]+)\}|\{(queue)\}")


def render(text: str, values: dict[str, dict[str, str]]) -> str:
    """Fill ``{customer.name}``, ``{agent.first_name}``, ``{conversation.id}``, ``{queue}``..."""

    def sub(m: re.Match[str]) -> str:
        if m.group(3):
            return values.get("conversation", {}).get("queue", m.group(0))
        group, key = m.group(1), m.group(2)
        if group in values and key in values[group]:
            return values[group][key]
        return m.group(0)

    return PLACEHOLDER_RE.sub(sub, text)


class Canned:
    """Team-wide canned replies."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.key = Keys(prefix).canned

    async def list(self) -> list[dict[str, Any]]:
        rows = await self.redis.hgetall(self.key)
        replies = [json.loads(v) for v in rows.values()]
        return sorted(replies, key=lambda r: (r.get("title", "").lower(), r["id"]))

    async def get(self, reply_id: str) -> dict[str, Any]:
        raw = await self.redis.hget(self.key, reply_id)
        if raw is None:
            raise not_found(f"canned reply {reply_id!r}")
        return json.loads(raw)

    async def create(self, title: str, text: str, by: str) -> dict[str, Any]:
        reply = {"id": "r_" + secrets.token_hex(6), "title": title, "text": text, "updated_by": by,
                 "updated_ts": int(time.time() * 1000)}
        await self.redis.hset(self.key, reply["id"], json.dumps(reply))
        return reply

    async def update(self, reply_id: str, by: str, title: str | None = None, text: str | None = None) -> dict[str, Any]:
        reply = await self.get(reply_id)
        if title is not None:
            reply["title"] = title
        if text is not None:
            reply["text"] = text
        reply["updated_by"] = by
        reply["updated_ts"] = int(time.time() * 1000)
        await self.redis.hset(self.key, reply_id, json.dumps(reply))
        return reply

    async def delete(self, reply_id: str) -> None:
        if not await self.redis.hdel(self.key, reply_id):
            raise not_found(f"canned reply {reply_id!r}")
