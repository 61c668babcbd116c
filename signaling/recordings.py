"""Where a call recording is: which node's disk holds its file, and how another node may read it.

Why here: a recording is written by the node that held the call (media/recorder.py), into that
node's recordings folder (``media.recordings_dir``, else ``<data_dir>/recordings``). Nodes behind
one proxy share Redis but, usually, no disk, so ``<prefix>rec:<id>`` names the node that wrote the
file as well as the file. A node asked for a recording that is not on its own disk fetches it from
that node (server/recordings.py), at the ``internal_url`` the node advertises with its heartbeat
(signaling/cluster.py). That request carries a *node token*: a Segue token of kind ``n`` signed
with ``auth.secret`` (signaling/tokens.py, which every node shares already), bound to one recording
and valid for a minute, so the internal endpoint opens nothing to a client that is not a node.

Why not copy the files instead (into Redis, or onto every node): docs/deployment.md "Recordings
with several nodes".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from .errors import ProtocolError, forbidden, not_found
from .store import Keys
from .tokens import Signer, TokenError

# what the calls layer names a recording: "rec_" + 24 random bytes in base64url
RECORDING_ID_RE = re.compile(r"^rec_[A-Za-z0-9_-]{32}$")
#: the path of a recording on a node's internal endpoint (server/recordings.py)
INTERNAL_PATH = "/internal/v1/recordings/{rid}"
#: the header a node's request to another node carries its node token in
NODE_TOKEN_HEADER = "X-Segue-Node-Token"
#: how long a node token opens its recording (a request starts within it; the transfer may go on)
NODE_TOKEN_TTL_S = 60.0


@dataclass(frozen=True)
class RecordingPlace:
    """A recording as Redis names it: its conversation, its file's name in the recordings folder,
    and the node that wrote it ("" for recordings made before nodes were named)."""

    rid: str
    conversation: str
    file: str
    node: str


class Recordings:
    """The recordings' entries in Redis and this node's recordings folder.

    Why one object: the calls layer adds entries as calls start, the REST API finds them, and
    both must agree on the folder, the node's name and the tokens nodes show each other."""

    def __init__(self, redis: aioredis.Redis, config: Any, signer: Signer, cluster: Any = None,
                 node_id: str = "") -> None:
        self.redis = redis
        self.config = config
        self.keys = Keys(config.redis.key_prefix)
        self.signer = signer
        self.cluster = cluster  # signaling.cluster.Cluster: where the other nodes are
        self.node_id = cluster.node_id if cluster is not None else node_id

    def folder(self) -> Path:
        """This node's recordings folder (``media.recordings_dir``, else ``<data_dir>/recordings``)."""
        configured = self.config.media.recordings_dir
        return Path(configured).expanduser().resolve() if configured else self.config.data_path / "recordings"

    async def add(self, rid: str, conversation: str, file: str) -> None:
        """Name a recording this node is writing (the call has just started here)."""
        await self.redis.hset(self.keys.recording(rid), mapping={
            "conversation": conversation, "file": file, "node": self.node_id,
            "created_ts": str(int(time.time() * 1000))})

    async def find(self, rid: str) -> RecordingPlace:
        """The recording ``rid`` as Redis names it, or ``not_found``."""
        if not RECORDING_ID_RE.match(rid):
            raise not_found(f"recording {rid[:80]!r}")
        mapping = await self.redis.hgetall(self.keys.recording(rid))
        if not mapping or not mapping.get("file") or not mapping.get("conversation"):
            raise not_found(f"recording {rid!r}")
        return RecordingPlace(rid, mapping["conversation"], mapping["file"], mapping.get("node", ""))

    def local_file(self, place: RecordingPlace) -> Path | None:
        """The file on this node's disk (its own recording, or any node's on a shared folder)."""
        path = self.folder() / place.file
        return path if path.is_file() else None

    async def owner_url(self, place: RecordingPlace) -> str:
        """The URL of the recording on the internal endpoint of the node that wrote it, for a node
        whose disk lacks the file: ``not_found`` when that node is this one (the file was removed),
        ``unavailable`` when that node is not running."""
        if not place.node:
            raise ProtocolError("not_found", f"recording {place.rid} is not on this node's disk, and it was made before "
                                             "Segue named the node of each recording: download it from the node that "
                                             "held the call")
        if place.node == self.node_id or self.cluster is None:
            raise ProtocolError("not_found", f"recording {place.rid} is no longer on this server "
                                             "(its file was removed from the recordings folder)")
        base = await self.cluster.address_of(place.node)
        if not base:
            raise self.unreachable(place, "it is not running (no heartbeat in Redis)")
        return base + INTERNAL_PATH.format(rid=place.rid)

    @staticmethod
    def unreachable(place: RecordingPlace, why: str) -> ProtocolError:
        """``503 unavailable``: the recording exists, on a node that cannot be reached now."""
        return ProtocolError("unavailable", f"recording {place.rid} is on node {place.node}, which is not reachable: "
                                            f"{why}. Start that node again (under the same cluster.node_id), or retry "
                                            "once it is back")

    # node-to-node ----------------------------------------------------------------------------

    def node_token(self, rid: str) -> str:
        """What this node shows another node's internal endpoint to read recording ``rid``."""
        return self.signer.sign("n", f"{self.node_id}|{rid}", NODE_TOKEN_TTL_S)

    def check_node_token(self, token: str | None, rid: str) -> str:
        """The asking node's id when ``token`` is a node token for recording ``rid``; else ``forbidden``."""
        if not token:
            raise forbidden(f"this endpoint answers Segue nodes only: a request needs the {NODE_TOKEN_HEADER} header "
                            "a node signs with auth.secret (clients download recordings at /api/v1/recordings/{id})")
        try:
            claims = self.signer.verify(token, "n")
        except TokenError as exc:
            hint = ("are the nodes' clocks in sync (NTP)?" if "expired" in str(exc)
                    else "is auth.secret the same on every node?")
            raise forbidden(f"{exc} ({hint})") from None
        node, _, signed_rid = claims.sub.rpartition("|")
        if signed_rid != rid:
            raise forbidden(f"this node token was signed for another recording, not {rid}")
        return node


RECORDINGS: web.AppKey[Recordings] = web.AppKey("segue_recordings", Recordings)
