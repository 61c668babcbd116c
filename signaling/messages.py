"""Every client -> server payload of docs/protocol.md, as a schema (see ``schema.py``).

Keep this file and the tables in docs/protocol.md in step: a field added here is a field the
SDK may send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .apikeys import NAME_RE as KEY_NAME_RE, SCOPES
from .schema import (
    CHANNEL_RE, LOCALE_RE, MESSAGE, USERNAME_RE, attributes, chars, counts, event_id, ident, number, strings,
)

# "video": a call from the web with the camera on (routed like a voice call: docs/routing.md)
Channel = Literal["chat", "voice", "video"]

# an absolute http(s) URL (the page trail: page.view)
PAGE_URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)


# --- connect ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CustomerAuth:
    v: int = number(1, 1)
    visitor_token: str | None = chars(max_len=2048, default=None)
    site: str | None = chars(max_len=128, default=None)
    # checked by server.auth.verify_identity (it names its own fields)
    identity: object | None = None


@dataclass(frozen=True)
class AgentAuth:
    v: int = number(1, 1)
    token: str = chars(max_len=2048, min_len=1)
    # a wallboard: queue pushes and call monitoring, but never online, never offered a conversation
    watch: bool = False


# --- customer ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    page_url: str | None = chars(max_len=2048, default=None)
    page_title: str | None = chars(max_len=512, default=None)
    referrer: str | None = chars(max_len=2048, default=None)
    locale: str | None = chars(max_len=35, default=None)


@dataclass(frozen=True)
class ConversationStart:
    queue: str | None = ident("a queue name", default=None)
    channel: Channel = "chat"
    context: Context | None = None
    text: str | None = chars(max_len=MESSAGE, min_len=1, default=None)
    name: str | None = chars(max_len=128, min_len=1, default=None)    # anonymous visitors only
    email: str | None = chars(max_len=320, min_len=3, default=None)   # anonymous visitors only
    attributes: dict[str, object] | None = attributes(default=None)   # custom attributes (plan, order_id...)


@dataclass(frozen=True)
class ConversationResume:
    conversation_id: str = ident("a conversation id")
    after: str | None = event_id(default=None)


@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class MessageSend:
    conversation_id: str = ident("a conversation id")
    text: str = chars(max_len=MESSAGE, min_len=1)
    client_id: str | None = chars(max_len=64, min_len=1, default=None)


@dataclass(frozen=True)
class Typing:
    conversation_id: str = ident("a conversation id")
    typing: bool = False


@dataclass(frozen=True)
class Read:
    conversation_id: str = ident("a conversation id")
    event_id: str = event_id()


@dataclass(frozen=True)
class Rate:
    conversation_id: str = ident("a conversation id")
    score: int = number(1, 5)
    comment: str | None = chars(max_len=2000, default=None)


@dataclass(frozen=True)
class ConversationRef:
    conversation_id: str = ident("a conversation id")


@dataclass(frozen=True)
class AttributesSet:
    attributes: dict[str, object] = attributes()
    conversation_id: str | None = ident("a conversation id", default=None)


@dataclass(frozen=True)
class PageView:
    url: str = chars(max_len=2048, min_len=1, pattern=PAGE_URL_RE, describe="an http(s) URL like https://shop.example/cart")
    title: str | None = chars(max_len=512, default=None)


# --- agent ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PresenceSet:
    status: Literal["available", "away", "offline"] = "available"


@dataclass(frozen=True)
class ConversationOpen:
    conversation_id: str = ident("a conversation id")
    after: str | None = event_id(default=None)


@dataclass(frozen=True)
class NoteAdd:
    conversation_id: str = ident("a conversation id")
    text: str = chars(max_len=MESSAGE, min_len=1)


@dataclass(frozen=True)
class TransferTarget:
    agent: str | None = ident("an agent id", default=None)
    queue: str | None = ident("a queue name", default=None)


@dataclass(frozen=True)
class Transfer:
    conversation_id: str = ident("a conversation id")
    to: TransferTarget
    mode: Literal["cold", "warm"] = "cold"
    note: str | None = chars(max_len=MESSAGE, default=None)


@dataclass(frozen=True)
class ConsultMessage:
    conversation_id: str = ident("a conversation id")
    text: str = chars(max_len=MESSAGE, min_len=1)


# wrap-up tags given on close (docs/protocol.md "conversation.close"): short labels like "refund" or "vip follow-up"
TAG_RE = re.compile(r"^[^\s<>\x00-\x1f](?:[^<>\x00-\x1f]{0,38}[^\s<>\x00-\x1f])?$")
MAX_TAGS = 20


@dataclass(frozen=True)
class AgentClose:
    conversation_id: str = ident("a conversation id")
    disposition: str | None = chars(max_len=100, min_len=1, default=None)
    tags: list[str] | None = strings(max_items=MAX_TAGS, max_len=40, pattern=TAG_RE,
                                     describe="a tag of 1-40 characters (no < or >, no spaces at either end)",
                                     default=None)


@dataclass(frozen=True)
class CannedRender:
    id: str = ident("a canned reply id")
    conversation_id: str = ident("a conversation id")


# --- REST bodies ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Login:
    username: str = chars(max_len=64, min_len=1)
    password: str = chars(max_len=1024, min_len=1)


@dataclass(frozen=True)
class AgentCreate:
    username: str = chars(max_len=64, min_len=1, pattern=USERNAME_RE,
                         describe="lower-case letters, digits, '.', '_' or '-' (up to 64)")
    password: str = chars(max_len=1024, min_len=4)
    name: str | None = chars(max_len=128, min_len=1, default=None)
    role: Literal["agent", "supervisor", "admin"] = "agent"
    skills: list[str] | None = strings(max_len=64, pattern=CHANNEL_RE, describe="a skill name like billing", default=None)
    capacity: dict[str, int] | None = counts(default=None)
    channels: list[str] | None = strings(max_items=8, pattern=CHANNEL_RE, describe="a channel name", default=None)


@dataclass(frozen=True)
class AgentUpdate:
    password: str | None = chars(max_len=1024, min_len=4, default=None)
    name: str | None = chars(max_len=128, min_len=1, default=None)
    role: Literal["agent", "supervisor", "admin"] | None = None
    skills: list[str] | None = strings(max_len=64, pattern=CHANNEL_RE, describe="a skill name like billing", default=None)
    capacity: dict[str, int] | None = counts(default=None)
    channels: list[str] | None = strings(max_items=8, pattern=CHANNEL_RE, describe="a channel name", default=None)
    # the console's language (docs/sdk.md "Languages of the console and the wallboard"); "": the browser's
    locale: str | None = chars(max_len=35, pattern=LOCALE_RE, default=None,
                               describe='a language tag like "zh-CN", or "" for the browser\'s')


@dataclass(frozen=True)
class CannedCreate:
    title: str = chars(max_len=200, min_len=1)
    text: str = chars(max_len=MESSAGE, min_len=1)


@dataclass(frozen=True)
class CannedUpdate:
    title: str | None = chars(max_len=200, min_len=1, default=None)
    text: str | None = chars(max_len=MESSAGE, min_len=1, default=None)


# --- REST bodies for servers: API keys and the write endpoints (docs/rest.md) -------------------

Scope = Literal[SCOPES]  # type: ignore[valid-type]  # one list of scopes: signaling/apikeys.py


@dataclass(frozen=True)
class ApiKeyCreate:
    name: str = chars(max_len=64, min_len=1, pattern=KEY_NAME_RE,
                     describe="1 to 64 letters, digits, spaces or _ . : - (starting with a letter or digit)")
    scopes: list[Scope] = strings(max_items=5, max_len=32)


@dataclass(frozen=True)
class IdentityRef:
    """A customer as the calling server knows them (trusted: the API key vouches for it)."""

    site: str = ident("a site name")
    id: str = chars(max_len=256, min_len=1)
    name: str | None = chars(max_len=128, min_len=1, default=None)
    email: str | None = chars(max_len=320, min_len=3, default=None)


@dataclass(frozen=True)
class ConversationCreate:
    customer_id: str | None = ident("a customer id", default=None)
    identity: IdentityRef | None = None
    queue: str | None = ident("a queue name", default=None)
    text: str | None = chars(max_len=MESSAGE, min_len=1, default=None)
    attributes: dict[str, object] | None = attributes(default=None)
    agent: str | None = ident("an agent id", default=None)


@dataclass(frozen=True)
class Speaker:
    """Who a server speaks as: an agent (by id) or a bot (by name)."""

    kind: Literal["agent", "bot"]
    id: str | None = ident("an agent id", default=None)
    name: str | None = chars(max_len=64, min_len=1, default=None)


@dataclass(frozen=True)
class MessagePost:
    text: str = chars(max_len=MESSAGE, min_len=1)
    as_: Speaker | None = field(default=None, metadata={"name": "as"})
    client_id: str | None = chars(max_len=64, min_len=1, default=None)


@dataclass(frozen=True)
class NotePost:
    text: str = chars(max_len=MESSAGE, min_len=1)


@dataclass(frozen=True)
class ClosePost:
    disposition: str | None = chars(max_len=100, min_len=1, default=None)
    tags: list[str] | None = strings(max_items=MAX_TAGS, max_len=40, pattern=TAG_RE,
                                     describe="a tag of 1-40 characters (no < or >, no spaces at either end)",
                                     default=None)


@dataclass(frozen=True)
class AttributesPatch:
    attributes: dict[str, object] = attributes()


# --- webhooks (REST bodies; rules in webhooks.py) ------------------------------------------------

@dataclass(frozen=True)
class WebhookCreate:
    url: str = chars(max_len=2048, min_len=1)
    # event types (docs/webhooks.md); omitted, [] or ["*"]: every type
    events: list[str] | None = strings(max_items=16, max_len=64, default=None)
    description: str | None = chars(max_len=500, default=None)
    enabled: bool = True


@dataclass(frozen=True)
class WebhookUpdate:
    url: str | None = chars(max_len=2048, min_len=1, default=None)
    events: list[str] | None = strings(max_items=16, max_len=64, default=None)
    description: str | None = chars(max_len=500, default=None)
    enabled: bool | None = None
