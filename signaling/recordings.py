"""Where a call recording is: which node's disk holds its file, and how another node may read it.

Why here: a recording is written by the node that held the call (media/recorder.py), into that
node's recordings folder (``media.recordings_dir``, else ``<data_dir>/recordings``). Nodes behind
one proxy share Redis but, usually, no disk, so ``<prefix>rec:<id>`` names the node that wrote the
file as well as the file. A node asked for a recording that is not on its own disk fetches it from
that node (server/recordings.py), at the ``internal_url`` the node advertises with its heartbeat
(signaling/cluster.py). That request carries a *node token*: a Segue token of kind ``n`` signed
with ``auth.secret`` (signaling/tokens.py, which every node shares already), bound to one recording
and valid for a minute, so the internal endpoint opens nothing to a client that is not a node.

A node keeps its id across restarts (signaling/cluster.py ``claim_node_id``); recordings that Redis
names with an id that was not kept are claimed by the node whose folder holds them when it starts
(``Recordings.claim_orphans``).

Why not copy the files instead (into Redis, or onto every node): docs/deployment.md "Recordings
with several nodes".
"""

from __future__ import annotations

import asyncio
import logging
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

log = logging.getLogger(__name__)

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

    async def claim_orphans(self) -> int:
        """Name this node in Redis as the holder of the recordings in its folder whose entry names a
        node that is not running, or none: they were written here by a run under another id (a node
        id that was not kept: recordings made before Segue kept it in the data folder, or a
        ``node-id`` file lost while the recordings folder was kept), and other nodes fetch them here
        from now on. Entries naming a running node stay (it has the file too: a shared folder), as
        do files Redis does not name. Returns how many were claimed."""
        if self.cluster is None:
            return 0
        folder = self.folder()
        files = await asyncio.to_thread(_recording_files, folder)
        alive: dict[str, bool] = {}
        claimed = 0
        for start in range(0, len(files), _CLAIM_BATCH):
            batch = files[start:start + _CLAIM_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for path in batch:
                    pipe.hmget(self.keys.recording(path.stem), "file", "node")
                entries = await pipe.execute()
            for path, (file, node) in zip(batch, entries):
                if file != path.name or node == self.node_id:
                    continue  # not a recording Redis names (or not this file), or ours already
                node = node or ""
                if node and node not in alive:
                    alive[node] = await self.cluster.is_alive(node)
                if node and alive[node]:
                    continue
                if await self.redis.eval(_CLAIM_ORPHAN, 1, self.keys.recording(path.stem), node, self.node_id):
                    claimed += 1
        if claimed:
            log.warning("this node (%s) holds %d recordings in %s that Redis named with a node not running: "
                        "they are named with this node now, so that other nodes fetch them here", self.node_id,
                        claimed, folder)
        return claimed

    @staticmethod
    def unreachable(place: RecordingPlace, why: str) -> ProtocolError:
        """``503 unavailable``: the recording exists, on a node that cannot be reached now."""
        return ProtocolError("unavailable", f"recording {place.rid} is on node {place.node}, which is not reachable: "
                                            f"{why}. Start that node again (on its data folder, or under the same "
                                            "cluster.node_id), or retry once it is back")

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


def _recording_files(folder: Path) -> list[Path]:
    """The files in ``folder`` named like a recording (``rec_<id>.<extension>``)."""
    try:
        return sorted(p for p in folder.iterdir() if RECORDING_ID_RE.match(p.stem) and p.is_file())
    except FileNotFoundError:
        return []  # nothing recorded here yet


#: recordings looked up in Redis per round trip when a node claims those in its folder
_CLAIM_BATCH = 500
# ARGV[1] the node the entry names ("" for none), ARGV[2] this node: set only if it still names it
_CLAIM_ORPHAN = """
local node = redis.call('HGET', KEYS[1], 'node') or ''
if node ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
return 1
"""

RECORDINGS: web.AppKey[Recordings] = web.AppKey("segue_recordings", Recordings)
