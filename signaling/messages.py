"""Every client -> server payload of docs/protocol.md, as a schema (see ``schema.py``).

Keep this file and the tables in docs/protocol.md in step: a field added here is a field the
SDK may send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .schema import (
    CHANNEL_RE, MESSAGE, USERNAME_RE, chars, counts, event_id, ident, number, strings,
)

Channel = Literal["chat", "voice"]


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


@dataclass(frozen=True)
class AgentClose:
    conversation_id: str = ident("a conversation id")
    disposition: str | None = chars(max_len=100, min_len=1, default=None)


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


@dataclass(frozen=True)
class CannedCreate:
    title: str = chars(max_len=200, min_len=1)
    text: str = chars(max_len=MESSAGE, min_len=1)


@dataclass(frozen=True)
class CannedUpdate:
    title: str | None = chars(max_len=200, min_len=1, default=None)
    text: str | None = chars(max_len=MESSAGE, min_len=1, default=None)
