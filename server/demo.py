"""The demo account's fences: it exists for a person trying Segue on this machine, nowhere else.

Why a module of its own: the account has a published password, so three places must agree on
what "this machine" means. ``serve`` refuses to start with the demo on when the node is reachable
from elsewhere (a non-loopback ``http.host`` or ``http.public_url``); and even on loopback, a
reverse proxy on the same host (nginx in front of 127.0.0.1:8080) would publish it, so the demo
login and its sign-in hint answer only requests that came straight from this machine by a
loopback name (no proxy headers, a loopback ``Host``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from .config import Config
from .i18n import Message

# headers a reverse proxy adds: a request that carries one came from somewhere else
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP", "Forwarded")


def is_loopback(host: str) -> bool:
    """Whether a host name or address means this machine only ("" and 0.0.0.0: every interface)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


class DemoExposed(Exception):
    """The demo account is on while the node is reachable from other machines; says how to fix it."""


def check_demo(config: Config) -> None:
    """Refuse a configuration that would publish the demo login (see the module doc)."""
    if not config.demo.enabled:
        return
    public = urlsplit(config.http.public_url).hostname if config.http.public_url else None
    exposed = config.http.host if not is_loopback(config.http.host) else public if public and not is_loopback(public) else None
    if exposed is None:
        return
    setting = "http.host" if exposed == config.http.host else "http.public_url"
    raise DemoExposed(Message(
        "refusing to start: {setting} is {host} (reachable from other machines) while the demo account"
        " is enabled, and anyone who reaches this server could sign in as {username} with its"
        " published password: set demo.enabled: false (SEGUE_DEMO_ENABLED=false) and create an admin with"
        " `segue agent add NAME --role admin` (see docs/security.md)",
        setting=setting, host=exposed or "*", username=repr(config.demo.agent_username),
    ))


def request_is_local(request: web.Request) -> bool:
    """A request straight from this machine, by a loopback name, through no proxy."""
    if not is_loopback(request.remote or ""):
        return False
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    return is_loopback(urlsplit(f"//{request.host}").hostname or "")
