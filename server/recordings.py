"""Serving a call recording from any node: from this node's disk, else streamed from the node
that wrote it.

Why: behind a load balancer, a request for ``/api/v1/recordings/{id}`` reaches any node, but the
file is on the disk of the node that held the call (signaling/recordings.py names it in Redis).
So a node reads its own folder first (its own recordings, or every node's when the folder is a
shared mount), and otherwise streams the file from that node's internal endpoint
(``/internal/v1/recordings/{id}`` at its ``cluster.internal_url``): the bytes pass through as
they come (nothing is buffered whole), with ``Range`` passed on, so a player's seeking works through
any node. The internal endpoint answers only requests that carry a node token (signed with
``auth.secret``, bound to the recording) and reads only its own disk (no second hop, no loop).

Errors: the node that holds the file is down or unreachable -> ``503 unavailable`` naming it;
its file is gone -> ``404 not_found``. docs/deployment.md "Recordings with several nodes".
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from signaling import INTERNAL_RECORDING_PATH, NODE_TOKEN_HEADER, RECORDINGS, ProtocolError, RecordingPlace, Recordings

log = logging.getLogger(__name__)

# asked of the owner for the client, and answered back to it (byte ranges and their validators)
_PASSED_ON = ("Range", "If-Range")
_PASSED_BACK = ("Content-Length", "Content-Range", "Accept-Ranges", "Last-Modified", "ETag")
# what the owner may answer that the client gets as is (206 a range; 416 a range past the end)
_RELAYED = (200, 206, 416)
_CHUNK = 64 * 1024


def _headers(rid: str) -> dict[str, str]:
    return {"Content-Type": "audio/webm", "Cache-Control": "private, no-store",
            "Content-Disposition": f'attachment; filename="{rid}.webm"'}


async def serve(request: web.Request, recordings: Recordings, place: RecordingPlace) -> web.StreamResponse:
    """The recording's bytes for a caller already allowed to read it (server/rest.py checked)."""
    path = recordings.local_file(place)
    if path is not None:  # this node's recording, or a shared folder: Range is FileResponse's
        return web.FileResponse(path, headers=_headers(place.rid))
    return await _relay(request, recordings, place, await recordings.owner_url(place))


async def _relay(request: web.Request, recordings: Recordings, place: RecordingPlace, url: str) -> web.StreamResponse:
    """Stream the file from the node that has it, answering the client as that node answered."""
    headers = {name: request.headers[name] for name in _PASSED_ON if name in request.headers}
    headers[NODE_TOKEN_HEADER] = recordings.node_token(place.rid)
    headers["Accept-Encoding"] = "identity"  # the bytes as stored: lengths and ranges mean the file's
    wait_s = recordings.config.cluster.forward_timeout_s
    timeout = aiohttp.ClientTimeout(total=None, connect=wait_s, sock_read=wait_s)
    response: web.StreamResponse | None = None
    try:
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
            async with http.request(request.method, url, headers=headers, allow_redirects=False) as upstream:
                if upstream.status == 404:
                    raise ProtocolError("not_found", f"recording {place.rid} is no longer on node {place.node} "
                                                     "(its file was removed from that node's recordings folder)")
                if upstream.status not in _RELAYED:
                    why = await _refusal(upstream)
                    log.warning("recording %s: node %s answered %s at %s: %s", place.rid, place.node,
                                upstream.status, url, why)
                    raise recordings.unreachable(place, f"it answered HTTP {upstream.status} ({why})")
                response = web.StreamResponse(status=upstream.status, headers=_headers(place.rid))
                for name in _PASSED_BACK:
                    if name in upstream.headers:
                        response.headers[name] = upstream.headers[name]
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                return response
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        if response is not None and response.prepared:
            # the status line is sent: the client sees the body end short of its Content-Length
            log.warning("recording %s: the transfer from node %s stopped (that node or the client went): %s",
                        place.rid, place.node, detail)
            if request.transport is not None:
                request.transport.close()
            return response
        log.warning("recording %s: node %s is not reachable at %s: %s", place.rid, place.node, url, detail)
        raise recordings.unreachable(place, f"{url} did not answer ({detail}); check that node's "
                                            "cluster.internal_url and that this node can reach it") from None


async def _refusal(upstream: aiohttp.ClientResponse) -> str:
    """The owner's error message (its JSON ``error.message``), for our answer and the log."""
    try:
        body = await upstream.json(content_type=None)
        return str(body["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return upstream.reason or "no reason given"


async def internal_recording(request: web.Request) -> web.StreamResponse:
    """``GET /internal/v1/recordings/{rid}``: a recording on this node's disk, for another node
    (never for a client: the node token is required). JSON errors like the REST API's."""
    recordings = request.app[RECORDINGS]
    rid = request.match_info["rid"]
    try:
        asker = recordings.check_node_token(request.headers.get(NODE_TOKEN_HEADER), rid)
        place = await recordings.find(rid)
        path = recordings.local_file(place)
        if path is None:
            raise ProtocolError("not_found", f"recording {rid} is not in the recordings folder of node "
                                             f"{recordings.node_id}")
    except ProtocolError as exc:
        if exc.code == "forbidden":
            log.warning("internal recording request refused (from %s): %s", request.remote, exc.message)
        return web.json_response({"error": exc.as_dict()}, status=exc.http_status)
    log.debug("recording %s read by node %s", rid, asker)
    return web.FileResponse(path, headers=_headers(rid))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(INTERNAL_RECORDING_PATH, internal_recording)
