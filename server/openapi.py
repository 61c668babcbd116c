"""The REST API's OpenAPI 3.1 document, served at ``/api/openapi.json``.

Generated, never written by hand: paths and operations from the one operations table
(``server.rest.OPERATIONS``, which also routes the requests), request bodies from the dataclasses
that validate them (``signaling.messages`` through ``signaling.json_schema``), answers from
``server.rest_schemas``. A test compares the router's ``/api/`` routes with the document's paths,
and schemathesis checks live answers against it (tests/integration/test_openapi.py).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from aiohttp import web

from signaling import SIGNALING, ID_RE, SCOPES, json_schema

from signaling import messages as m

from .rest import API, OPERATIONS, Op, Param
from .rest_schemas import ANSWERS, SCHEMAS, ref
from .version import __version__

PATH = "/api/openapi.json"
_PARAM_RE = re.compile(r"\{([a-z_]+)\}")
_SPEC: web.AppKey[dict[str, Any]] = web.AppKey("segue_openapi", dict)

ERRORS = {
    "400": "bad_json, or invalid: a field or parameter is missing, unknown or wrong (field names it)",
    "401": "unauthorized (no bearer token or key) or bad_token (malformed, expired, revoked)",
    "403": "forbidden: the caller lacks the scope, or may not read this conversation or customer",
    "404": "not_found: no such conversation, customer, agent, reply, key or recording",
    "409": "conflict: e.g. the conversation is closed, or the name exists",
    "413": "too_large: the body is over the limit",
    "429": "rate_limited: too many attempts; retry later",
    "503": "unavailable: storage unreachable; retry",
}

AUTH_TEXT = {
    "agent": "an agent's token (from POST /api/v1/auth/login), not an API key",
    "any": "any agent token or API key; the operation's description says who may do what",
    "none": "no authentication",
}


def _operation(op: Op, schemas: dict[str, Any], max_message: int) -> dict[str, Any]:
    name = op.operation_id or (op.handler.__name__ if op.handler is not None else "")
    out: dict[str, Any] = {"operationId": name, "summary": op.summary, "tags": [op.tag]}
    if op.auth == "scope":
        who = f"Needs the scope `{op.scope}` (an API key holding it, or an agent whose role implies it)."
        out["security"] = [{"bearer": [op.scope]}]
        out["x-segue-scope"] = op.scope
    else:
        who = f"Auth: {AUTH_TEXT[op.auth]}."
        out["security"] = [] if op.auth == "none" else [{"bearer": []}]
    out["description"] = f"{op.description} {who}".strip()
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_RE.pattern}}
        for name in _PARAM_RE.findall(op.path)
    ]
    for p in op.query:
        param: dict[str, Any] = {"name": p.name, "in": "query", "required": False, "schema": p.schema}
        if p.description:
            param["description"] = p.description
        params.append(param)
    if params:
        out["parameters"] = params
    if op.body is not None:
        name = op.body.__name__
        body = schemas.setdefault(name, json_schema(op.body, max_message, schemas))
        out["requestBody"] = {"required": bool(body.get("required")),
                              "content": {"application/json": {"schema": ref(name)}}}
    ok: dict[str, Any] = {"description": "done"}
    if op.media_type != "application/json":
        ok["content"] = {op.media_type: {"schema": {"type": "string", "contentMediaType": op.media_type}}}
    elif op.answer is not None:
        ok["content"] = {"application/json": {"schema": ref(op.answer)}}
    responses: dict[str, Any] = {str(op.status): ok}
    if op.status == 201 and op.answer == "EventAnswer":  # a retried client_id: the first event again
        responses["200"] = {"description": "already stored (same client_id)",
                            "content": {"application/json": {"schema": ref(op.answer)}}}
    error = {"content": {"application/json": {"schema": ref("Error")}}}
    for status, text in ERRORS.items():
        responses[status] = {"description": text, **error}
    responses["default"] = {"description": "another error (same shape)", **error}
    out["responses"] = responses
    return out


def build(ops: Iterable[Op], max_message: int = 4000) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``ops``."""
    ops = list(ops)
    schemas: dict[str, Any] = {**SCHEMAS, **ANSWERS}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas, max_message)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Segue REST API",
            "version": __version__,
            "description": "Conversations, customers, agents and API keys of a Segue contact server "
                           "(docs/rest.md). Errors are always {error: {code, message, field?}}.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in sorted({op.tag for op in ops})],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An agent token from POST /api/v1/auth/login (its scopes follow the role: agent "
                               "conversations:read, conversations:write, customers:read; supervisor also "
                               "agents:manage; admin every scope and API keys), or an API key "
                               f"sgk_<id>_<secret> holding some of: {', '.join(SCOPES)}."}},
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    cache = request.app[_SPEC]  # built on first request: every module has added its operations by then
    if not cache:
        cache.update(build(operations(request.app), request.app[SIGNALING].config.limits.max_message_chars))
    return web.json_response(cache)


OPENAPI = Op("GET", PATH, openapi_json, "This document", "OpenApi", auth="none", tag="meta")
_OPS: web.AppKey[list[Op]] = web.AppKey("segue_operations", list)

# Operations other modules route themselves (server/webhooks_api.add_routes),
# described here so the document is complete; they are listed only when the app routes them.
_WID = f"{API}/webhooks"
_DELIVERIES = (Param("state", {"enum": ["pending", "succeeded", "failed"]}, "only deliveries in this state"),
               Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}))
ELSEWHERE: list[Op] = [
    Op("GET", _WID, None, "Webhook endpoints", "WebhookList", "webhooks:manage", tag="webhooks",
       operation_id="list_webhooks"),
    Op("POST", _WID, None, "Add a webhook endpoint (its signing secret is in the answer)", "WebhookAnswer",
       "webhooks:manage", status=201, body=m.WebhookCreate, tag="webhooks", operation_id="create_webhook"),
    Op("GET", f"{_WID}/event-types", None, "The event types an endpoint can subscribe to", "EventTypes",
       "webhooks:manage", tag="webhooks", operation_id="webhook_event_types"),
    Op("GET", f"{_WID}/{{wid}}", None, "A webhook endpoint", "WebhookAnswer", "webhooks:manage", tag="webhooks",
       operation_id="get_webhook"),
    Op("PATCH", f"{_WID}/{{wid}}", None, "Change a webhook endpoint", "WebhookAnswer", "webhooks:manage",
       body=m.WebhookUpdate, tag="webhooks", operation_id="update_webhook"),
    Op("DELETE", f"{_WID}/{{wid}}", None, "Delete a webhook endpoint", None, "webhooks:manage", status=204,
       tag="webhooks", operation_id="delete_webhook"),
    Op("POST", f"{_WID}/{{wid}}/rotate-secret", None, "A new signing secret (the old one is honoured a while)",
       "WebhookAnswer", "webhooks:manage", tag="webhooks", operation_id="rotate_webhook_secret"),
    Op("POST", f"{_WID}/{{wid}}/test", None, "Queue a test delivery", "DeliveryAnswer", "webhooks:manage",
       status=202, tag="webhooks", operation_id="test_webhook"),
    Op("GET", f"{_WID}/{{wid}}/deliveries", None, "An endpoint's deliveries, newest first", "DeliveryList",
       "webhooks:manage", query=_DELIVERIES, tag="webhooks", operation_id="list_webhook_deliveries"),
    Op("GET", f"{_WID}/{{wid}}/deliveries/{{did}}", None, "A delivery, its attempts and payload", "DeliveryAnswer",
       "webhooks:manage", tag="webhooks", operation_id="get_webhook_delivery"),
    Op("POST", f"{_WID}/{{wid}}/deliveries/{{did}}/retry", None, "Deliver again now", "DeliveryAnswer",
       "webhooks:manage", status=202, tag="webhooks", operation_id="retry_webhook_delivery"),
]


def _routed(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        out.update((route.method, path) for route in resource)
    return out


def operations(app: web.Application) -> list[Op]:
    """Every operation this app routes under /api/ (the table, tables other modules added, and the
    operations described here for modules that route their own)."""
    routed = _routed(app)
    elsewhere = [op for op in ELSEWHERE if (op.method, op.path) in routed]
    return [*app.get(_OPS, [*OPERATIONS, OPENAPI]), *elsewhere]


def register(app: web.Application, ops: list[Op]) -> None:
    """Route ``ops`` and describe them in the document (for a module with its own table)."""
    from .rest import add_operations

    app[_OPS] = [*operations(app), *ops]
    add_operations(app.router, ops)


def setup(app: web.Application) -> None:
    app[_SPEC] = {}
    app.router.add_get(PATH, openapi_json)
