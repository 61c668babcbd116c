"""Call recordings for a back office (a CRM, a QA tool) through the REST API with an API key:
a real node and Redis, a real recorded call between aiortc peers (the set-up of
test_call_signaling's recording test), the file read back with av."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from signaling import SIGNALING
from test_call_signaling import call_room, eventually, in_voice_call


def audio_frames(path: str) -> int:
    """The audio frames av decodes from the file (it must open as a media container)."""
    import av

    with av.open(path) as container:
        assert container.streams.audio, [s.type for s in container.streams]
        return sum(1 for _ in container.decode(audio=0))


async def test_recording_downloads_with_an_api_key_that_reads_conversations(start_segue: Any, tmp_path: Path) -> None:
    segue = await start_segue({
        "routing.queues": [{"name": "general", "record_calls": True}],
        "media.recordings_dir": str(tmp_path / "rec"),
    })
    async with call_room(segue, "c_rec_api") as room:
        customer, agent, cid, url = (room[k] for k in ("customer", "agent", "cid", "url"))
        _, _, _, ears = await in_voice_call(customer, agent)
        n = len(ears.frames)
        await ears.wait_until(lambda: len(ears.frames) > n + 25)
        await agent.ok("call.hangup")
    keys = segue.app[SIGNALING].api_keys
    _, reader = await keys.create("crm", ["conversations:read"], "test")
    _, other = await keys.create("crm-customers", ["customers:read"], "test")

    async with aiohttp.ClientSession() as http:
        async def get(path: str, key: str) -> tuple[int, Any, str]:
            async with http.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}) as r:
                body = await r.read()
                return r.status, body, r.headers.get("Content-Type", "")

        async def listed() -> Any:
            status, body, _ = await get(f"/api/v1/conversations/{cid}", reader)
            assert status == 200, body
            view = json.loads(body)["conversation"]
            done = view.get("recordings") and "duration_s" in view["recordings"][0]
            return view["recordings"] if done else None

        await eventually(listed)
        recordings = await listed()
        assert len(recordings) == 1, recordings
        rec = recordings[0]
        assert rec["id"].startswith("rec_") and rec["url"] == f"/api/v1/recordings/{rec['id']}"
        assert rec["channel"] == "voice" and rec["started_ts"] > 0 and rec["duration_s"] > 0, rec

        status, body, kind = await get(rec["url"], reader)
        assert status == 200, body[:300]
        assert kind == "audio/webm" and len(body) > 1000
        (tmp_path / "dl.webm").write_bytes(body)
        assert await asyncio.to_thread(audio_frames, str(tmp_path / "dl.webm")) > 25

        status, body, _ = await get(rec["url"], other)  # a key without conversations:read
        error = json.loads(body)["error"]
        assert status == 403 and error["code"] == "forbidden" and "conversations:read" in error["message"], error

        for unknown in ("rec_" + "A" * 32, "rec_nope"):
            status, body, _ = await get(f"/api/v1/recordings/{unknown}", reader)
            assert status == 404 and json.loads(body)["error"]["code"] == "not_found", body

        # the OpenAPI document describes it: the scope, and a binary answer
        async with http.get(f"{url}/api/openapi.json") as r:
            op = (await r.json())["paths"]["/api/v1/recordings/{rid}"]["get"]
        assert op["security"] == [{"bearer": ["conversations:read"]}]
        assert op["responses"]["200"]["content"]["audio/webm"]["schema"]["contentMediaType"] == "audio/webm"
