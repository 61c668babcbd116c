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

from .rest import Op, OPERATIONS
from .rest_schemas import ANSWERS, SCHEMAS, ref
from .version import __version__

PATH = "/api/openapi.json"
_PARAM_RE = re.compile(r"\{([a-z_]+)\}")
_SPEC: web.AppKey[dict[str, Any]] = web.AppKey("segue_openapi", dict)

ERRORS = {
    "400": "bad_json, or invalid: a field or parameter is missing, unknown or wrong (field names it)",
    "401": "unauthorized (no bearer token or key) or bad_token (malformed, expired, revoked)",
    "403": "forbidden: the caller lacks the scope, or may not read this conversation or customer",
    "404": "not_found: no such conversation, customer, agent, reply or key",
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
    out: dict[str, Any] = {"operationId": op.handler.__name__, "summary": op.summary, "tags": [op.tag]}
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
    if op.answer is not None:
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


def operations(app: web.Application) -> list[Op]:
    """Every operation this app routes under /api/ (the table, plus tables other modules added)."""
    return app.get(_OPS, [*OPERATIONS, OPENAPI])


def register(app: web.Application, ops: list[Op]) -> None:
    """Route ``ops`` and describe them in the document (for a module with its own table)."""
    from .rest import add_operations

    app[_OPS] = [*operations(app), *ops]
    add_operations(app.router, ops)


def setup(app: web.Application) -> None:
    app[_SPEC] = {}
    app.router.add_get(PATH, openapi_json)
