"""``segue agent ...`` and ``segue apikey ...``: manage agent accounts and API keys from a shell.

    segue agent add USERNAME --password PW --name "Ada L" --skills billing,de \\
        --role supervisor --capacity chat=3,voice=1
    segue agent set USERNAME [--password PW] [--name ...] [--skills ...] [--role ...] [--capacity ...]
    segue agent list
    segue agent remove USERNAME

Works against the configured Redis (``redis.url`` / ``SEGUE_REDIS_URL``). With none configured it
uses the embedded Redis in ``data_dir`` like ``segue serve``: the one a running server started
(found through its working folder), else it starts it for the duration of the command.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import redis.asyncio as aioredis

from signaling import CHANNEL_RE, ROLES, USERNAME_RE, Account, Directory, ProtocolError, parse_capacity

from .redis_client import make_redis, sentinel_url
from .cli import EXTRA_COMMANDS, UsageError, protocol_error
from .config import Config
from .embedded_redis import EmbeddedRedis
from .i18n import Message, _


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = _("manage agent accounts (stored in Redis)")
    sub = parser.add_subparsers(dest="agent_command", metavar="ACTION", required=True)

    def account_options(p: argparse.ArgumentParser, creating: bool) -> None:
        p.add_argument("username", help=_("login name: lower-case letters, digits, '.', '_' or '-'"))
        p.add_argument("--password", help=_("the password (asked for when omitted on a terminal)"))
        p.add_argument("--name", help=_("display name shown to customers"))
        p.add_argument("--skills", help=_("comma-separated skills, e.g. billing,de"))
        p.add_argument("--role", choices=ROLES, default="agent" if creating else None,
                       help=_("agent, supervisor (every conversation, the wallboard, accounts) or admin (also API keys)"))
        p.add_argument("--capacity", help=_("conversations at once per channel, e.g. chat=3,voice=1"))
        p.add_argument("--channels", help=_("channels taken (default: every channel with capacity)"))

    account_options(sub.add_parser("add", help=_("create an agent account")), True)
    account_options(sub.add_parser("set", help=_("change an agent account")), False)
    sub.add_parser("list", help=_("list agent accounts"))
    p_rm = sub.add_parser("remove", help=_("delete an agent account"))
    p_rm.add_argument("username", help=_("the account's login name"))


def _names(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    for item in items:
        if not CHANNEL_RE.match(item):
            raise UsageError(Message("{option}: {name} is not a valid name (lower-case letters, digits, '_' or '-')",
                                     option="--" + what, name=repr(item)))
    return items


def _password(args: argparse.Namespace, required: bool) -> str | None:
    if args.password is not None:
        if len(args.password) < 4:
            raise UsageError(Message("--password must be at least 4 characters"))
        return args.password
    if not required:
        return None
    if not sys.stdin.isatty():
        raise UsageError(Message("--password is required (no terminal to ask on)"))
    first = getpass.getpass(_("password for {username}: ").format(username=args.username))
    if getpass.getpass(_("again: ")) != first:
        raise UsageError(Message("the passwords differ"))
    if len(first) < 4:
        raise UsageError(Message("the password must be at least 4 characters"))
    return first


def running_embedded_url(folder: Path) -> str | None:
    """The URL of a ``redis-server`` already serving ``folder`` (a running ``segue serve``), if any."""
    proc = Path("/proc")
    if not proc.exists():
        return None
    target = str(folder.resolve())
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if os.readlink(entry / "cwd") != target:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "--port" in args:
            return f"redis://127.0.0.1:{args[args.index('--port') + 1]}/0"
        # redis-server rewrites its title to "redis-server 127.0.0.1:PORT"
        for arg in " ".join(args).split():
            host, sep, port = arg.rpartition(":")
            if sep and port.isdigit() and host in ("127.0.0.1", "*", "0.0.0.0", "localhost"):
                return f"redis://127.0.0.1:{port}/0"
    return None


@asynccontextmanager
async def command_redis(config: Config) -> AsyncIterator[aioredis.Redis]:
    """Redis for a one-shot command (agent, apikey, webhook): the configured one, the running node's
    embedded one, or an embedded one started for the command and stopped after it."""
    if config.log.level.lower() != "debug":
        logging.getLogger("server.embedded_redis").setLevel(logging.WARNING)
    embedded: EmbeddedRedis | None = None
    url = config.redis.url
    if config.redis.sentinels:  # the primary the sentinels name (docs/redis.md)
        url = sentinel_url(config.redis.sentinels, config.redis.sentinel_master)
    if not url:
        url = running_embedded_url(config.data_path / "redis")
        if url is None:
            embedded = await EmbeddedRedis.start(config.data_path, config.redis.startup_timeout_s)
            url = embedded.url
    redis = make_redis(url)
    try:
        try:
            await asyncio.wait_for(redis.ping(), timeout=config.redis.startup_timeout_s)
        except (OSError, aioredis.RedisError, asyncio.TimeoutError) as exc:
            raise UsageError(Message("cannot reach Redis at {url}: {reason}", url=url,
                                     reason=str(exc) or type(exc).__name__)) from None
        yield redis
    finally:
        await redis.aclose()
        if embedded is not None:
            await embedded.stop()


def _show(account: Account) -> str:
    caps = ",".join(f"{k}={v}" for k, v in account.capacity.items()) or "-"
    skills = ",".join(account.skills) or "-"
    return f"{account.id:20} {account.role:10} capacity={caps:18} skills={skills:20} name={account.name}"


async def _run(args: argparse.Namespace, config: Config) -> int:
    async with command_redis(config) as redis:
        return await _agent_command(args, redis, config)


async def _agent_command(args: argparse.Namespace, redis: aioredis.Redis, config: Config) -> int:
    directory = Directory(redis, config.redis.key_prefix)
    action = args.agent_command
    if action == "list":
        accounts = await directory.list()
        for account in accounts:
            print(_show(account))
        if not accounts:
            print(_("no agents"))
        return 0
    username = args.username.strip().lower()
    if not USERNAME_RE.match(username):
        raise UsageError(Message("username {name}: use lower-case letters, digits, '.', '_' or '-' (up to 64)",
                                 name=repr(args.username)))
    try:
        if action == "remove":
            await directory.delete((await directory.require(username)).id)  # its sockets end on every node
            print(_("removed agent {username}").format(username=username))
            return 0
        capacity = None
        if args.capacity is not None:
            try:
                capacity = parse_capacity(args.capacity)
            except ValueError as exc:
                raise protocol_error(exc, "--capacity") from None
        skills = _names(args.skills, "skills")
        channels = _names(args.channels, "channels")
        if action == "add":
            account = await directory.create(username, _password(args, True), args.name, args.role, skills,
                                             capacity, channels)
            print(_("added {account}").format(account=_show(account)))
        else:
            account = await directory.update((await directory.require(username)).id,
                                             password=_password(args, False), name=args.name,
                                             role=args.role, skills=skills, capacity=capacity, channels=channels)
            print(_("updated {account}").format(account=_show(account)))
    except ProtocolError as exc:
        raise protocol_error(exc) from None
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_run(args, config))


EXTRA_COMMANDS["agent"] = (_configure, run)


# --- segue apikey ... ----------------------------------------------------------------------------
#
#     segue apikey create --name crm --scope conversations:read --scope conversations:write
#     segue apikey list
#     segue apikey revoke ID

def _configure_apikey(parser: argparse.ArgumentParser) -> None:
    from signaling import SCOPES

    parser.description = _("manage API keys for servers (REST with Authorization: Bearer sgk_...)")
    sub = parser.add_subparsers(dest="apikey_command", metavar="ACTION", required=True)
    p_new = sub.add_parser("create", help=_("create a key and print it (once: only its hash is kept)"))
    p_new.add_argument("--name", required=True, help=_("what uses the key, e.g. crm (shown as the author of its writes)"))
    p_new.add_argument("--scope", action="append", choices=SCOPES, required=True, dest="scopes",
                       help=_("what the key may do; repeat for several"))
    sub.add_parser("list", help=_("list keys: id, name, scopes, created, last used"))
    p_rm = sub.add_parser("revoke", help=_("delete a key: it stops working at once"))
    p_rm.add_argument("id", help=_("the key's id (the 16 hex digits after sgk_)"))


def _when(ms: int | None) -> str:
    if not ms:
        return _("never")
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _run_apikey(args: argparse.Namespace, config: Config) -> int:
    async with command_redis(config) as redis:
        return await _apikey_command(args, redis, config)


async def _apikey_command(args: argparse.Namespace, redis: aioredis.Redis, config: Config) -> int:
    from signaling import ApiKeys

    keys = ApiKeys(redis, config.redis.key_prefix)
    try:
        if args.apikey_command == "create":
            key, token = await keys.create(args.name, args.scopes, "cli")
            print(_("created API key {id} ({name}) with scopes {scopes}").format(
                id=key.id, name=key.name, scopes=" ".join(key.scopes)), file=sys.stderr)
            print(_("the key is shown once; keep it secret:"), file=sys.stderr)
            print(token)
        elif args.apikey_command == "list":
            listed = await keys.list()
            for key in listed:
                print(f"{key.id}  {key.name:20} created={_when(key.created_ts)} by={key.created_by:12} "
                      f"last_used={_when(key.last_used_ts):20} scopes={','.join(key.scopes)}")
            if not listed:
                print(_("no API keys"))
        else:
            await keys.revoke(args.id)
            print(_("revoked API key {id}").format(id=args.id))
    except ProtocolError as exc:
        raise protocol_error(exc) from None
    return 0


def run_apikey(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_run_apikey(args, config))


EXTRA_COMMANDS["apikey"] = (_configure_apikey, run_apikey)
