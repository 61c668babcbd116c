"""Every client -> server ``call.*`` payload of docs/protocol.md ("Calls"), as a schema.

Why a module of its own (and not in ``messages.py``): the SDP limit comes from the media layer
(:data:`media.leg.MAX_SDP_CHARS`), and ``messages.py`` is also loaded by the REST API, which
must not pull aiortc in. Same rules as ``messages.py``: unknown fields are ``invalid``, every
error names the field (``candidate.sdpMLineIndex``), and a field added here is one the SDK may
send — keep the Calls tables of docs/protocol.md in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from media import MAX_SDP_CHARS

from .schema import chars, ident, number

Media = Literal["voice", "video", "screen"]
Mode = Literal["listen", "whisper", "barge"]

#: the byte limit of a ``call.offer`` event: an SDP of MAX_SDP_CHARS characters, JSON-escaped
#: (a line break is 2 characters in SDP, 4 in JSON), plus the rest of the payload. The namespace
#: uses the larger of this and ``limits.max_event_bytes``: a browser's offer with four m-sections
#: is about 13 kB, close to the 16 kB default that suits chat events.
OFFER_MAX_BYTES = 2 * MAX_SDP_CHARS + 1024


@dataclass(frozen=True)
class CallConfig:
    conversation_id: str | None = ident("a conversation id", default=None)  # accepted, not needed


@dataclass(frozen=True)
class CallRef:
    conversation_id: str = ident("a conversation id")


@dataclass(frozen=True)
class CallRequest:
    conversation_id: str = ident("a conversation id")
    media: Media = "voice"
    page_url: str | None = chars(max_len=2048, default=None)


@dataclass(frozen=True)
class CallDecline:
    conversation_id: str = ident("a conversation id")
    reason: str | None = chars(max_len=200, default=None)


@dataclass(frozen=True)
class CallOffer:
    conversation_id: str = ident("a conversation id")
    sdp: str = chars(max_len=MAX_SDP_CHARS, min_len=1)


@dataclass(frozen=True)
class IceCandidate:
    """``RTCIceCandidate.toJSON()`` as browsers send it; ``candidate: ""`` = end of candidates."""

    candidate: str = chars(max_len=1024)
    sdpMid: str | None = chars(max_len=64, default=None)  # noqa: N815 - the browser's name
    sdpMLineIndex: int | None = number(0, 63, default=None)  # noqa: N815
    usernameFragment: str | None = chars(max_len=256, default=None)  # noqa: N815


@dataclass(frozen=True)
class CallCandidate:
    conversation_id: str = ident("a conversation id")
    candidate: IceCandidate | None = None  # null or missing: end of candidates


@dataclass(frozen=True)
class CallMute:
    conversation_id: str = ident("a conversation id")
    muted: bool = field()  # required


@dataclass(frozen=True)
class CallHold:
    conversation_id: str = ident("a conversation id")
    held: bool = field()  # required


@dataclass(frozen=True)
class CallMonitor:
    conversation_id: str = ident("a conversation id")
    mode: Mode = "listen"
