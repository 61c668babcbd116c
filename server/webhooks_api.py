"""REST for webhook endpoints under ``/api/v1/webhooks`` (docs/webhooks.md, docs/rest.md).

Why a module of its own: the rules (URL and event-type checks, secrets, the queue) live in
``signaling.webhooks``; this only parses requests, checks the ``webhooks:manage`` scope through
``server.rest.authorize`` and shapes answers. Errors are the REST API's usual
``{"error": {"code", "message", "field"?}}`` (its middleware).
"""

from __future__ import annotations

from aiohttp import web

from signaling import WEBHOOK_EVENT_TYPES, WEBHOOKS, Webhooks
from signaling import messages as m

from .rest import API, _body, _limit, authorize

SCOPE = "webhooks:manage"
BASE = f"{API}/webhooks"


def _engine(request: web.Request) -> Webhooks:
    return request.app[WEBHOOKS]


async def list_webhooks(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    return web.json_response({"webhooks": [ep.public() for ep in await _engine(request).endpoints()]})


async def event_types(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    return web.json_response({"event_types": list(WEBHOOK_EVENT_TYPES)})


async def create_webhook(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    body = await _body(request, m.WebhookCreate)
    ep = await _engine(request).create(body.url, body.events, body.description, body.enabled)
    return web.json_response({"webhook": ep.public(with_secret=True)}, status=201)


async def get_webhook(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    ep = await _engine(request).get(request.match_info["wid"])
    return web.json_response({"webhook": ep.public()})


async def update_webhook(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    body = await _body(request, m.WebhookUpdate)
    ep = await _engine(request).update(request.match_info["wid"], body.url, body.events, body.description,
                                       body.enabled)
    return web.json_response({"webhook": ep.public()})


async def delete_webhook(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    await _engine(request).delete(request.match_info["wid"])
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    ep = await _engine(request).rotate_secret(request.match_info["wid"])
    return web.json_response({"webhook": ep.public(with_secret=True)})


async def send_test(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    delivery = await _engine(request).send_test(request.match_info["wid"])
    return web.json_response({"delivery": delivery}, status=202)


async def list_deliveries(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    deliveries = await _engine(request).deliveries(request.match_info["wid"], _limit(request, 50, 1000),
                                                   request.query.get("state"))
    return web.json_response({"deliveries": deliveries})


async def get_delivery(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    delivery = await _engine(request).delivery(request.match_info["wid"], request.match_info["did"])
    return web.json_response({"delivery": delivery})


async def retry_delivery(request: web.Request) -> web.Response:
    await authorize(request, SCOPE)
    delivery = await _engine(request).retry(request.match_info["wid"], request.match_info["did"])
    return web.json_response({"delivery": delivery}, status=202)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(BASE, list_webhooks)
    router.add_post(BASE, create_webhook)
    router.add_get(f"{BASE}/event-types", event_types)
    router.add_get(f"{BASE}/{{wid}}", get_webhook)
    router.add_patch(f"{BASE}/{{wid}}", update_webhook)
    router.add_delete(f"{BASE}/{{wid}}", delete_webhook)
    router.add_post(f"{BASE}/{{wid}}/rotate-secret", rotate_secret)
    router.add_post(f"{BASE}/{{wid}}/test", send_test)
    router.add_get(f"{BASE}/{{wid}}/deliveries", list_deliveries)
    router.add_get(f"{BASE}/{{wid}}/deliveries/{{did}}", get_delivery)
    router.add_post(f"{BASE}/{{wid}}/deliveries/{{did}}/retry", retry_delivery)
