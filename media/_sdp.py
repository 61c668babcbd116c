"""What a leg negotiated, read from the SDP text (public API) rather than aiortc's internals.

The forwarder needs, per m-section: payload type -> codec, RTX payload types, header-extension
ids, the remote SSRCs (primary and RTX) and our own SSRC and CNAME. Every one of these is in the
offer/answer text, so the parser is small and independent of aiortc versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CodecSpec:
    """A negotiated codec: the key the forwarder maps payload types by, leg to leg."""

    name: str  # upper-case encoding name: OPUS, VP8, H264, PCMU, ...
    clock_rate: int
    channels: int = 1
    fmtp: tuple[tuple[str, str], ...] = ()
    nack: bool = False  # a=rtcp-fb nack (the far end asks for retransmissions)

    @property
    def kind(self) -> str:
        return "video" if self.name in ("VP8", "VP9", "H264", "AV1") else "audio"

    def param(self, key: str) -> str | None:
        for k, v in self.fmtp:
            if k == key:
                return v
        return None

    def matches(self, other: "CodecSpec") -> int:
        """0 when incompatible, higher is a better match (same name, then same H264 profile)."""
        if self.name != other.name or self.clock_rate != other.clock_rate:
            return 0
        if self.name != "H264":
            return 2
        if (self.param("packetization-mode") or "0") != (other.param("packetization-mode") or "0"):
            return 0
        mine, theirs = self.param("profile-level-id") or "", other.param("profile-level-id") or ""
        return 3 if mine[:2].lower() == theirs[:2].lower() else 1


@dataclass
class MediaSection:
    """One negotiated m-section (audio or video) of a leg."""

    index: int
    kind: str
    mid: str
    direction: str = "sendrecv"
    codecs: dict[int, CodecSpec] = field(default_factory=dict)  # payload type -> codec
    rtx: dict[int, int] = field(default_factory=dict)  # RTX payload type -> primary payload type
    extensions: dict[str, int] = field(default_factory=dict)  # uri -> id
    ssrcs: list[int] = field(default_factory=list)  # in order of appearance
    fid: dict[int, int] = field(default_factory=dict)  # primary SSRC -> RTX SSRC
    cname: str | None = None
    port: int = 9

    @property
    def primary_ssrcs(self) -> list[int]:
        rtx = set(self.fid.values())
        return [s for s in self.ssrcs if s not in rtx]


def transport_identity(sdp: str) -> frozenset[str]:
    """The ICE credentials and DTLS fingerprints an SDP announces (``a=ice-ufrag``,
    ``a=ice-pwd``, ``a=fingerprint``). Two offers with different identities come from different
    peer connections (or an ICE restart), never from a renegotiation of the same one."""
    prefixes = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:")
    return frozenset(line.strip().lower() for line in sdp.splitlines() if line.startswith(prefixes))


def parse(sdp: str) -> list[MediaSection]:
    """Audio/video m-sections of an SDP blob, in order (other kinds are skipped but counted)."""
    sections: list[MediaSection] = []
    current: MediaSection | None = None
    index = -1
    rtpmap: dict[int, tuple[str, int, int]] = {}
    fmtp: dict[int, dict[str, str]] = {}
    nack: set[int] = set()

    def finish() -> None:
        if current is None:
            return
        for pt, (name, rate, channels) in rtpmap.items():
            params = fmtp.get(pt, {})
            if name == "RTX":
                try:
                    current.rtx[pt] = int(params.get("apt", ""))
                except ValueError:
                    pass
                continue
            if name in ("RED", "ULPFEC", "CN", "TELEPHONE-EVENT"):
                continue
            current.codecs[pt] = CodecSpec(
                name=name,
                clock_rate=rate,
                channels=channels,
                fmtp=tuple(sorted(params.items())),
                nack=pt in nack,
            )
        sections.append(current)

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            finish()
            index += 1
            parts = line[2:].split()
            kind = parts[0]
            rtpmap, fmtp, nack = {}, {}, set()
            if kind in ("audio", "video"):
                current = MediaSection(index=index, kind=kind, mid=str(index))
                try:
                    current.port = int(parts[1])
                except (IndexError, ValueError):
                    pass
            else:
                current = None
            continue
        if current is None or not line.startswith("a="):
            continue
        attr, _, value = line[2:].partition(":")
        if attr in ("sendrecv", "sendonly", "recvonly", "inactive"):
            current.direction = attr
        elif attr == "mid":
            current.mid = value
        elif attr == "rtpmap":
            pt_text, _, enc = value.partition(" ")
            bits = enc.split("/")
            try:
                pt = int(pt_text)
                rate = int(bits[1]) if len(bits) > 1 else 8000
                channels = int(bits[2]) if len(bits) > 2 else 1
            except ValueError:
                continue
            rtpmap[pt] = (bits[0].upper(), rate, channels)
        elif attr == "fmtp":
            pt_text, _, params = value.partition(" ")
            try:
                pt = int(pt_text)
            except ValueError:
                continue
            pairs = {}
            for item in params.split(";"):
                k, _, v = item.strip().partition("=")
                if k:
                    pairs[k.strip()] = v.strip()
            fmtp[pt] = pairs
        elif attr == "rtcp-fb":
            pt_text, _, fb = value.partition(" ")
            if fb.strip() == "nack":
                try:
                    nack.add(int(pt_text))
                except ValueError:
                    pass
        elif attr == "extmap":
            id_text, _, rest = value.partition(" ")
            uri = rest.split()[0] if rest.split() else ""
            try:
                current.extensions[uri] = int(id_text.split("/")[0])
            except ValueError:
                pass
        elif attr == "ssrc":
            ssrc_text, _, rest = value.partition(" ")
            try:
                ssrc = int(ssrc_text)
            except ValueError:
                continue
            if ssrc not in current.ssrcs:
                current.ssrcs.append(ssrc)
            if rest.startswith("cname:"):
                current.cname = rest[6:]
        elif attr == "ssrc-group":
            bits = value.split()
            if bits and bits[0] == "FID" and len(bits) >= 3:
                try:
                    current.fid[int(bits[1])] = int(bits[2])
                except ValueError:
                    pass
    finish()
    return sections
