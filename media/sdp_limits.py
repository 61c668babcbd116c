"""What an offer may contain before aiortc sees it: the limits of what Segue negotiates.

Why a check of our own in front of aiortc's parser: that parser trusts its input. It asserts on
m-lines and payload types (``AssertionError``, i.e. ``internal``), accepts extmap ids and SSRCs
that later fail to pack, answers every m-section however many there are (an offer of 100 audio
m-lines took the event loop for 150 ms and answered with 100 m-lines), and answers an offer with
no DTLS fingerprint as if DTLS could ever succeed. Segue's browsers (``web/sdk/call.js``) offer at
most four m-sections (microphone, camera, screen share, a second voice), one BUNDLE group, a
sha-256 fingerprint and a handful of candidates; anything far outside that is refused at once,
naming the line, before a peer connection or a UDP port is spent on it.

:func:`check_offer` is one pass over the text (about a millisecond for the largest offer allowed)
and raises :class:`SdpRefused` (a :class:`media.leg.LegError`) with the SDP attribute at fault.
"""

from __future__ import annotations

import re
from typing import Callable

#: an offer longer than this is refused (a browser's offer with four m-sections is ~13 kB)
MAX_SDP_CHARS = 64_000
#: lines in one offer, and characters in one line
MAX_LINES = 2_000
MAX_LINE_CHARS = 4_096
#: m-sections in one offer: call.js offers 4 (audio, video, screen, audio2); a supervisor 2
MAX_M_SECTIONS = 8
#: payload types listed on one m-line (Chrome lists ~20 for video)
MAX_FORMATS = 64
#: header extensions per m-section (Chrome offers ~12 for video)
MAX_EXTMAPS = 32
#: ICE candidates in the whole offer (a host with several interfaces, srflx, relay)
MAX_CANDIDATES = 64
#: fingerprints in the whole offer (aiortc lists three per m-section: sha-256, -384, -512)
MAX_FINGERPRINTS = 32
#: SSRC lines per m-section (cname, msid... for a primary, RTX and FEC SSRC, simulcast layers)
MAX_SSRC_LINES = 64
#: an m-section identifier (RFC 8843: sent in an RTP header extension, 16 bytes at most there)
MAX_MID_CHARS = 16

#: DTLS fingerprint hash functions aiortc verifies, and the digest size of each
FINGERPRINT_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}

MEDIA_KINDS = ("audio", "video", "application")
_DIGITS = re.compile(r"^[0-9]+$")
#: attributes aiortc reads a value from (it fails on ``a=group`` without one, found by tests/fuzz)
_NEEDS_VALUE = frozenset({"group", "msid-semantic", "ssrc-group", "ssrc", "fingerprint", "ice-ufrag", "ice-pwd",
                          "setup", "mid", "extmap", "rtpmap", "fmtp", "rtcp-fb", "candidate", "rtcp", "sctpmap",
                          "sctp-port", "max-message-size"})
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+$")
_ICE_CHARS = re.compile(r"^[A-Za-z0-9+/]+$")
_M_LINE = re.compile(r"^m=([a-z]+) ([0-9]{1,5})(?:/[0-9]{1,3})? ([A-Za-z/]+) (.+)$")
_HEX_PAIRS = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*$")
_CANDIDATE = re.compile(
    r"^\S{1,32} [0-9]{1,3} [A-Za-z]{1,8} [0-9]{1,10} \S{1,255} [0-9]{1,5} typ (host|srflx|prflx|relay)( .*)?$"
)


class SdpRefused(ValueError):
    """An offer outside what Segue negotiates; ``attribute`` names the SDP line at fault
    (``a=fingerprint``, ``m=``, ``a=group:BUNDLE``...), the message says what to send instead."""

    def __init__(self, attribute: str, message: str, line: int | None = None) -> None:
        where = f"line {line} ({attribute})" if line is not None else attribute
        super().__init__(f"{where}: {message}")
        self.attribute = attribute
        self.line = line


class _Section:
    __slots__ = ("kind", "line", "mid", "extmaps", "transport", "ssrc_lines", "port", "direction", "rtpmaps", "fmtps")

    def __init__(self, kind: str, line: int, port: int) -> None:
        self.kind = kind
        self.line = line
        self.port = port
        self.mid: str | None = None
        self.extmaps: dict[int, str] = {}
        self.transport: set[str] = set()  # the _TRANSPORT attributes it has
        self.ssrc_lines = 0
        self.direction = False
        self.rtpmaps: set[str] = set()
        self.fmtps: list[tuple[str, int]] = []  # (payload type, line)


def check_offer(sdp: str) -> None:
    """Refuse (:class:`SdpRefused`) an offer outside Segue's limits; return None when it is fine.

    Checked: size and line count; ``v=0`` first; at most :data:`MAX_M_SECTIONS` m-lines of kind
    audio/video/application with payload types 0-127; every m-section has a unique ``a=mid`` of at
    most :data:`MAX_MID_CHARS` token characters; every mid a BUNDLE group names exists (once);
    extmap ids are 1-255 and unique per m-section; SSRCs fit 32 bits; at most
    :data:`MAX_CANDIDATES` well-formed candidates; ICE credentials present and well-formed; and a
    DTLS fingerprint (sha-256/384/512 with the digest's exact length) for every m-section.
    """
    if not isinstance(sdp, str):
        raise SdpRefused("sdp", "must be SDP text")
    if len(sdp) > MAX_SDP_CHARS:
        raise SdpRefused("sdp", f"is {len(sdp)} characters; the limit is {MAX_SDP_CHARS}")
    lines = sdp.splitlines()
    if len(lines) > MAX_LINES:
        raise SdpRefused("sdp", f"has {len(lines)} lines; the limit is {MAX_LINES}")
    if not lines or lines[0].strip() != "v=0":
        raise SdpRefused("v=", "an SDP offer starts with the line v=0", 1)

    sections: list[_Section] = []
    session_transport: set[str] = set()  # _TRANSPORT attributes above the first m-line: for every m-section
    bundles: list[tuple[int, list[str]]] = []
    candidates = fingerprints = 0
    current: _Section | None = None

    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            raise SdpRefused(line[:2], f"is {len(line)} characters long; the limit is {MAX_LINE_CHARS}", number)
        if line.startswith("m="):
            if len(sections) >= MAX_M_SECTIONS:
                raise SdpRefused("m=", f"more than {MAX_M_SECTIONS} m-sections (Segue offers audio, video, "
                                       "screen share and a second audio at most)", number)
            current = _m_line(line, number)
            sections.append(current)
            continue
        if not line.startswith("a="):
            continue
        attr, colon, value = line[2:].partition(":")
        if not colon and attr in _NEEDS_VALUE:
            raise SdpRefused(f"a={attr}", f"needs a value (a={attr}:...)", number)
        if attr in _TRANSPORT:
            if attr == "fingerprint":
                fingerprints += 1
                if fingerprints > MAX_FINGERPRINTS:
                    raise SdpRefused("a=fingerprint", f"more than {MAX_FINGERPRINTS} fingerprints", number)
            _TRANSPORT[attr][0](value, number)
            (session_transport if current is None else current.transport).add(attr)
        elif attr == "group":
            semantics, _, ids = value.partition(" ")
            if semantics == "BUNDLE":
                bundles.append((number, ids.split()))
        elif current is None:
            continue
        elif attr == "mid":
            if not value or len(value) > MAX_MID_CHARS or not _TOKEN.match(value):
                raise SdpRefused("a=mid", f"a mid is 1-{MAX_MID_CHARS} token characters (like 0 or audio), "
                                          f"got {value[:40]!r}", number)
            if current.mid is not None:
                raise SdpRefused("a=mid", "one a=mid per m-section", number)
            if any(s.mid == value for s in sections):
                raise SdpRefused("a=mid", f"mid {value!r} is used by two m-sections", number)
            current.mid = value
        elif attr == "extmap":
            _extmap(current, value, number)
        elif attr == "candidate":
            candidates += 1
            if candidates > MAX_CANDIDATES:
                raise SdpRefused("a=candidate", f"more than {MAX_CANDIDATES} candidates", number)
            if not _CANDIDATE.match(value.strip()):
                raise SdpRefused("a=candidate", "expected '<foundation> <component> <protocol> <priority> <address> "
                                                "<port> typ <host|srflx|prflx|relay>'", number)
            if not 1 <= int(value.split()[1]) <= 256 or int(value.split()[5]) > 65535:
                raise SdpRefused("a=candidate", "component 1-256 and port 0-65535", number)
        elif attr == "ssrc":
            current.ssrc_lines += 1
            if current.ssrc_lines > MAX_SSRC_LINES:
                raise SdpRefused("a=ssrc", f"more than {MAX_SSRC_LINES} a=ssrc lines in one m-section", number)
            _u32("a=ssrc", value.partition(" ")[0], number)
        elif attr == "ssrc-group":
            for ssrc in value.split()[1:]:
                _u32("a=ssrc-group", ssrc, number)
        elif attr in ("rtpmap", "fmtp", "rtcp-fb"):
            pt = value.partition(" ")[0]
            if not (pt == "*" and attr == "rtcp-fb") and not (_DIGITS.match(pt) and len(pt) <= 3 and int(pt) <= 127):
                raise SdpRefused(f"a={attr}", f"payload type must be 0-127, got {pt[:20]!r}", number)
            if attr == "rtpmap":
                current.rtpmaps.add(str(int(pt)))
            elif attr == "fmtp":
                current.fmtps.append((str(int(pt)), number))
        elif attr in ("sendrecv", "sendonly", "recvonly", "inactive"):
            current.direction = True
        elif attr == "rtcp":
            port = value.partition(" ")[0]
            if not _DIGITS.match(port) or len(port) > 5 or int(port) > 65535:
                raise SdpRefused("a=rtcp", f"port must be 0-65535, got {port[:20]!r}", number)
        elif attr == "max-message-size":
            if not _DIGITS.match(value) or len(value) > 12:
                raise SdpRefused("a=max-message-size", "must be a whole number of bytes", number)

    if not sections:
        raise SdpRefused("m=", "the offer has no m-section (audio or video)")
    for s in sections:
        where = f"the {s.kind} m-section on line {s.line}"
        if s.mid is None:
            raise SdpRefused("a=mid", f"{where} has no a=mid (Segue bundles every m-section)", s.line)
        if s.kind != "application" and not s.direction:
            raise SdpRefused("a=sendrecv", f"{where} has no direction (a=sendrecv, sendonly, recvonly or "
                                           "inactive)", s.line)
        for pt, line in s.fmtps:
            if pt not in s.rtpmaps:
                raise SdpRefused("a=fmtp", f"payload type {pt} has no a=rtpmap in its m-section", line)
        if s.port == 0:
            continue  # a rejected m-section: no transport of its own
        for attr, (_check, lacking) in _TRANSPORT.items():
            if attr not in s.transport and attr not in session_transport:
                raise SdpRefused(f"a={attr}", f"{where} has no {lacking}", s.line)
    mids = {s.mid for s in sections}
    for number, ids in bundles:
        if not ids:
            raise SdpRefused("a=group:BUNDLE", "names no mid", number)
        if len(set(ids)) != len(ids):
            raise SdpRefused("a=group:BUNDLE", "names a mid twice", number)
        unknown = [i for i in ids if i not in mids]
        if unknown:
            raise SdpRefused("a=group:BUNDLE", f"names mid {unknown[0][:40]!r}, which no m-section has "
                                               f"(the mids are {', '.join(sorted(m for m in mids if m))})", number)


def _m_line(line: str, number: int) -> _Section:
    match = _M_LINE.match(line)
    if match is None:
        raise SdpRefused("m=", "expected 'm=<audio|video|application> <port> <protocol> <formats>'", number)
    kind, port, _proto, formats = match.groups()
    if kind not in MEDIA_KINDS:
        raise SdpRefused("m=", f"media kind {kind[:20]!r} is not supported (audio, video or application)", number)
    if int(port) > 65535:
        raise SdpRefused("m=", f"port must be 0-65535, got {port}", number)
    fmt = formats.split()
    if len(fmt) > MAX_FORMATS:
        raise SdpRefused("m=", f"more than {MAX_FORMATS} payload types", number)
    if kind != "application":
        for pt in fmt:
            if not _DIGITS.match(pt) or len(pt) > 3 or int(pt) > 127 or 72 <= int(pt) <= 76:
                # 72-76 would read as RTCP packet types on a muxed port (RFC 5761)
                raise SdpRefused("m=", f"payload types are 0-71 or 77-127, got {pt[:20]!r}", number)
    return _Section(kind, number, int(port))


def _fingerprint(value: str, number: int) -> None:
    parts = value.split()
    if len(parts) != 2:
        raise SdpRefused("a=fingerprint", "expected 'a=fingerprint:sha-256 AB:CD:...'", number)
    algorithm, digest = parts[0].lower(), parts[1]
    size = FINGERPRINT_BYTES.get(algorithm)
    if size is None:
        raise SdpRefused("a=fingerprint", f"hash function {algorithm[:20]!r} is not supported "
                                          f"({', '.join(FINGERPRINT_BYTES)})", number)
    if len(digest) != 3 * size - 1 or not _HEX_PAIRS.match(digest):
        raise SdpRefused("a=fingerprint", f"a {algorithm} fingerprint is {size} hex bytes separated by ':'", number)


def _ice_credential(name: str, shortest: int) -> Callable[[str, int], None]:
    """The check of ``a=ice-ufrag`` or ``a=ice-pwd`` (RFC 8839: ``shortest``-256 ice-chars)."""

    def check(value: str, number: int) -> None:
        if not shortest <= len(value) <= 256 or not _ICE_CHARS.match(value):
            raise SdpRefused(name, f"must be {shortest}-256 characters of letters, digits, + and /", number)

    return check


def _setup(value: str, number: int) -> None:
    if value not in ("actpass", "active", "passive"):
        raise SdpRefused("a=setup", f"must be actpass, active or passive, got {value[:20]!r}", number)


def _extmap(section: _Section, value: str, number: int) -> None:
    parts = value.split()
    ident = parts[0].split("/")[0] if parts else ""
    if len(parts) < 2 or not _DIGITS.match(ident) or len(ident) > 3 or not 1 <= int(ident) <= 255:
        raise SdpRefused("a=extmap", f"header extension ids are 1-255, got {ident[:20]!r}", number)
    ext_id = int(ident)
    if ext_id in section.extmaps and section.extmaps[ext_id] != parts[1]:
        raise SdpRefused("a=extmap", f"id {ext_id} names two header extensions in one m-section", number)
    section.extmaps[ext_id] = parts[1]
    if len(section.extmaps) > MAX_EXTMAPS:
        raise SdpRefused("a=extmap", f"more than {MAX_EXTMAPS} header extensions in one m-section", number)


def _u32(name: str, text: str, number: int) -> None:
    if not _DIGITS.match(text) or len(text) > 10 or int(text) > 0xFFFFFFFF:
        raise SdpRefused(name, f"an SSRC is a whole number 0-4294967295, got {text[:20]!r}", number)


#: the transport attributes: at session level (for every m-section) or in an m-section, each value
#: checked; every m-section with a port needs each one (in the order given), else it has no ...
_TRANSPORT: dict[str, tuple[Callable[[str, int], None], str]] = {
    "fingerprint": (_fingerprint, "DTLS fingerprint (a=fingerprint:sha-256 <32 hex bytes>): media must be encrypted"),
    "setup": (_setup, "DTLS role (a=setup:actpass)"),
    "ice-ufrag": (_ice_credential("a=ice-ufrag", 4), "ICE credentials (a=ice-ufrag and a=ice-pwd)"),
    "ice-pwd": (_ice_credential("a=ice-pwd", 22), "ICE credentials (a=ice-ufrag and a=ice-pwd)"),
}
