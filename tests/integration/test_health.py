"""The node answers /healthz with Redis state, and serves the demo home page."""

import aiohttp


async def test_healthz_reports_redis_ok(segue) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(segue.url + "healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["status"] == "ok"
    assert body["redis"] == "ok"
    assert body["version"]
    assert body["uptime_s"] >= 0


async def test_healthz_reports_redis_down(start_segue, make_config) -> None:
    import redis.asyncio as aioredis
    from server import NODE

    srv = await start_segue()
    # Point this node at a port where nothing listens, after start-up.
    srv.node.redis = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.3)
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.url + "healthz") as resp:
            assert resp.status == 503
            body = await resp.json()
    assert body["status"] == "degraded"
    assert body["redis"].startswith("error")
    await srv.node.redis.aclose()


async def test_home_page_links_the_pages(segue) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(segue.url) as resp:
            assert resp.status == 200
            text = await resp.text()
    assert "/widget/" in text and "/agent/" in text
