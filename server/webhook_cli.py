"""``segue webhook ...``: manage webhook endpoints from a shell (docs/webhooks.md).

    segue webhook add https://example.com/hooks --event message.created --event conversation.closed
    segue webhook list
    segue webhook set ep_... [--url URL] [--event TYPE ...|--all-events] [--description TEXT] [--enable|--disable]
    segue webhook remove ep_...
    segue webhook deliveries ep_... [--limit 20] [--state pending|succeeded|failed]
    segue webhook rotate ep_...      (a new secret; the old one keeps signing for 24 h)
    segue webhook test ep_...        (queue a webhook.test delivery; a running node sends it)

Works against the configured Redis like ``segue agent``: ``redis.url``, else the embedded Redis of
a running server in ``data_dir``, else one started for the command. Running nodes pick changes up
at once (Redis pub/sub).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime, timezone
from typing import Any

from signaling import WEBHOOK_EVENT_TYPES, ProtocolError, Webhooks

from .accounts_cli import command_redis
from .cli import EXTRA_COMMANDS, UsageError, protocol_error
from .config import Config
from .i18n import Message, _


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = _("manage webhook endpoints (stored in Redis; docs/webhooks.md)")
    sub = parser.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    endpoint_id = _("the endpoint id (ep_...)")
    add = sub.add_parser("add", help=_("register an endpoint; prints its signing secret"))
    add.add_argument("url", help=_("where to POST events: https://... (or http://)"))
    add.add_argument("--event", action="append", dest="events", metavar="TYPE",
                     help=_("an event type to send (repeat for more; default: all): {types}").format(
                         types=", ".join(WEBHOOK_EVENT_TYPES)))
    add.add_argument("--description", help=_("a note for people (what receives these)"))
    add.add_argument("--disabled", action="store_true", help=_("register it switched off"))
    sub.add_parser("list", help=_("list endpoints"))
    change = sub.add_parser("set", help=_("change an endpoint"))
    change.add_argument("id", help=endpoint_id)
    change.add_argument("--url", help=_("a new URL"))
    which = change.add_mutually_exclusive_group()
    which.add_argument("--event", action="append", dest="events", metavar="TYPE",
                       help=_("send only these event types (repeat for more)"))
    which.add_argument("--all-events", action="store_true", help=_("send every event type"))
    change.add_argument("--description", help=_("a new note"))
    onoff = change.add_mutually_exclusive_group()
    onoff.add_argument("--enable", action="store_true", help=_("switch it on"))
    onoff.add_argument("--disable", action="store_true", help=_("switch it off (pending deliveries fail)"))
    for name, text in (("remove", _("delete an endpoint")), ("rotate", _("give an endpoint a new signing secret")),
                       ("test", _("queue a webhook.test delivery to an endpoint"))):
        p = sub.add_parser(name, help=text)
        p.add_argument("id", help=endpoint_id)
    dls = sub.add_parser("deliveries", help=_("recent deliveries to an endpoint, newest first, with their attempts"))
    dls.add_argument("id", help=endpoint_id)
    dls.add_argument("--limit", type=int, default=20, help=_("how many (default 20)"))
    dls.add_argument("--state", choices=("pending", "succeeded", "failed"), help=_("only deliveries in this state"))


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _show_delivery(d: dict[str, Any]) -> list[str]:
    lines = [f"{d['id']}  {d['type']:24} {d['state']:9} attempts={len(d['attempts'])}"
             + (f" next={_when(d.get('next_attempt_ts'))}" if d.get("next_attempt_ts") else "")]
    for a in d["attempts"]:
        result = str(a.get("status_code", "")) or a.get("error", "")
        if a.get("status_code") and a.get("error"):
            result += f" {a['error']}"
        lines.append(f"    #{a['n']} {_when(a['ts'])}  {result}  {a.get('duration_ms', 0)} ms")
    return lines


async def _run(args: argparse.Namespace, config: Config) -> int:
    async def no_payload(_cid: str, _eid: str) -> None:
        return None

    async with command_redis(config) as redis:
        engine = Webhooks(redis, config.redis.key_prefix, config, no_payload)
        action = args.webhook_command
        try:
            if action == "add":
                ep = await engine.create(args.url, args.events, args.description, not args.disabled)
                print(_("added {id} {url} events={events}").format(
                    id=ep.id, url=ep.url, events=",".join(ep.public()["events"]))
                    + ("" if ep.enabled else " " + _("(disabled)")))
                print(_("secret: {secret}  (verify deliveries with it; shown once — `segue webhook rotate` "
                        "makes a new one)").format(secret=ep.secret))
            elif action == "list":
                endpoints = await engine.endpoints()
                for ep in endpoints:
                    state = _("enabled") if ep.enabled else _("disabled")
                    print(f"{ep.id}  {state:8} {ep.url}  events={','.join(ep.public()['events'])}"
                          + (f"  {ep.description}" if ep.description else ""))
                if not endpoints:
                    print(_("no webhook endpoints"))
            elif action == "set":
                events = ["*"] if args.all_events else args.events
                enabled = True if args.enable else (False if args.disable else None)
                if args.url is None and events is None and args.description is None and enabled is None:
                    raise UsageError(Message("nothing to change: give --url, --event/--all-events, --description, "
                                             "--enable or --disable"))
                ep = await engine.update(args.id, args.url, events, args.description, enabled)
                print(_("updated {id} {state} {url} events={events}").format(
                    id=ep.id, state=_("enabled") if ep.enabled else _("disabled"), url=ep.url,
                    events=",".join(ep.public()["events"])))
            elif action == "remove":
                await engine.delete(args.id)
                print(_("removed {id}").format(id=args.id))
            elif action == "rotate":
                ep = await engine.rotate_secret(args.id)
                print(_("secret: {secret}  (the previous one also signs for 24 h)").format(secret=ep.secret))
            elif action == "test":
                d = await engine.send_test(args.id)
                print(_("queued {delivery} (a running node sends it; see `segue webhook deliveries {id}`)").format(
                    delivery=d["id"], id=args.id))
            elif action == "deliveries":
                if not 1 <= args.limit <= 1000:
                    raise UsageError(Message("--limit must be from 1 to 1000"))
                found = await engine.deliveries(args.id, args.limit, args.state)
                for d in found:
                    print("\n".join(_show_delivery(d)))
                if not found:
                    print(_("no {state} deliveries").format(state=args.state) if args.state
                          else _("no deliveries yet"))
        except ProtocolError as exc:
            raise protocol_error(exc) from None
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_run(args, config))


EXTRA_COMMANDS["webhook"] = (_configure, run)
