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


async def test_healthz_alive_readyz_not_ready_when_redis_is_down(start_segue, make_config) -> None:
    import redis.asyncio as aioredis

    srv = await start_segue()
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.url + "readyz") as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["ready"] is True
    # Point this node at a port where nothing listens, after start-up.
    working = srv.node.redis
    srv.node.redis = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.3)
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.url + "healthz") as resp:
            assert resp.status == 200  # alive: a liveness probe must not restart a node for Redis
            body = await resp.json()
        async with http.get(srv.url + "readyz") as resp:
            assert resp.status == 503
            ready = await resp.json()
    assert body["status"] == "degraded"
    assert body["redis"].startswith("error")
    assert ready["ready"] is False and ready["reason"].startswith("redis error")
    await srv.node.redis.aclose()
    srv.node.redis = working


async def test_metrics_in_prometheus_format_and_the_sticky_cookie(segue) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(segue.url + "metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
            cookie = resp.cookies.get("segue_node")
    for name in ("segue_connections", "segue_events_total", "segue_queue_waiting", "segue_calls",
                 "segue_forwarder_packets_sent", "segue_event_loop_lag_seconds", "segue_redis_latency_seconds"):
        assert f"\n{name}" in text or text.startswith(name) or f"# TYPE {name}" in text, name
    assert 'segue_queue_waiting{queue="general"}' in text
    assert cookie is not None and cookie.value == segue.node.node_id


async def test_home_page_links_the_pages(segue) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(segue.url) as resp:
            assert resp.status == 200
            text = await resp.text()
    assert "/widget/" in text and "/agent/" in text
