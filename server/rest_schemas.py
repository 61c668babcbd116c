"""JSON Schemas of what the REST API answers (the request bodies' come from ``signaling.messages``).

Why hand-written JSON Schema here and not response dataclasses: answers are built as dicts by
``signaling`` (summaries, events, agents) and carry optional parts; a schema states their shape
exactly (required keys, nullable values) and goes into the OpenAPI document as it is, where
schemathesis checks every answer against it (tests/integration/test_openapi.py). Objects allow
extra properties: a field added later is not a breaking change for clients.
"""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})},
                           "required": list(required)}
    if description:
        out["description"] = description
    return out


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
MS = {"type": "integer", "description": "milliseconds since 1970 (UTC)"}
ANY_OBJ = {"type": "object"}
BRIEF = obj({"id": STR, "name": STR})

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": obj({"code": STR, "message": STR}, {"field": STR})},
                 description="every error: a code to act on, a message for people, the field when one is wrong"),
    "Author": obj({"kind": {"enum": ["customer", "agent", "system", "integration", "bot"]}, "id": STR, "name": STR}),
    "Event": obj({"id": STR, "conversation_id": STR, "type": STR, "ts": MS, "author": ref("Author"),
                  "visibility": {"enum": ["all", "agents"]}, "data": ANY_OBJ},
                 description="one entry of a conversation's log (docs/protocol.md lists the types)"),
    "Conversation": obj(
        {"id": STR, "state": {"enum": ["queued", "offered", "assigned", "transferring", "closed"]},
         "customer": obj({"id": STR, "name": STR}, {"email": STR, "verified": BOOL}),
         "queue": STR, "channel": STR, "channels": array(STR), "created_ts": MS, "updated_ts": MS,
         "last_event_id": STR},
        {"agent": BRIEF, "closed_ts": MS, "disposition": STR,
         "csat": obj({"score": {"type": "integer", "minimum": 1, "maximum": 5}}, {"comment": STR}),
         "read": {"type": "object", "additionalProperties": STR}, "context": ANY_OBJ, "transfer": ANY_OBJ,
         "offer": obj({"agent": STR}), "attributes": ANY_OBJ,
         # the wrap-up (docs/conversations.md "Wrap-up"): channels with seconds on each, transfers, calls, tags
         "channels_used": array(STR), "channel_time": {"type": "object", "additionalProperties": {"type": "number"}},
         "transfers": array(obj({"from_agent": BRIEF, "to": ANY_OBJ, "mode": {"enum": ["cold", "warm"]}, "ts": MS},
                                {"note": STR})),
         "calls": array(obj({"started_ts": MS, "media": STR},
                            {"ended_ts": MS, "duration_s": {"type": "number"},
                             "recording": obj({"id": STR, "url": STR})})),
         "recording": obj({"id": STR, "url": STR}), "tags": array(STR),
         "recordings": array(obj({"id": STR, "url": STR, "started_ts": MS, "channel": STR},
                                 {"duration_s": {"type": "number"}}))},
        description="a conversation's summary (docs/protocol.md)"),
    "Customer": obj({"id": STR, "name": STR, "verified": BOOL}, {"email": STR, "site": STR, "external_id": STR}),
    "Agent": obj({"id": STR, "username": STR, "name": STR, "role": {"enum": ["agent", "supervisor", "admin"]},
                  "skills": array(STR), "capacity": {"type": "object", "additionalProperties": INT},
                  "channels": array(STR), "presence": STR},
                 {"locale": {"type": ["string", "null"], "description": "the chosen language (null: the browser's)"}}),
    "AgentView": {"allOf": [ref("Agent"), obj({"online": BOOL}, {"routing": obj(
        {"presence": STR, "reason": {"type": ["string", "null"]},
         "load": {"type": "object", "additionalProperties": INT}, "conversations": array(STR)})})]},
    "Queue": obj({"name": STR, "waiting": INT, "longest_wait_s": {"type": "number"}, "agents_available": INT,
                  "answer_target_s": {"type": "number"}, "offered": INT, "answered": INT, "answered_in_target": INT,
                  "avg_answer_s": {"type": ["number", "null"]}, "estimated_wait_s": {"type": ["number", "null"]}}),
    "CannedReply": obj({"id": STR, "title": STR, "text": STR}, {"updated_by": STR, "updated_ts": MS}),
    "Webhook": obj({"id": STR, "url": STR, "events": array(STR), "description": STR, "enabled": BOOL,
                    "created_ts": MS, "updated_ts": MS}, {"secret": STR},
                   description="a webhook endpoint (docs/webhooks.md); secret only when created or rotated"),
    "Delivery": obj({"id": STR, "endpoint_id": STR, "type": STR, "state": {"enum": ["pending", "succeeded", "failed"]},
                     "created_ts": MS, "attempts": array(ANY_OBJ)},
                    {"conversation_id": STR, "event_id": STR, "next_attempt_ts": MS, "test": BOOL, "payload": ANY_OBJ}),
    "ApiKey": obj({"id": STR, "name": STR, "scopes": array(STR), "created_ts": MS, "created_by": STR,
                   "last_used_ts": {"type": ["integer", "null"]}},
                  description="an API key's record; the key itself is shown only when it is created"),
}

# answers, by name (the operations' table in server/rest.py names one each)
ANSWERS: dict[str, Any] = {
    "Login": obj({"token": STR, "expires_in_s": INT, "agent": ref("Agent")}),
    "Me": obj({"agent": ref("Agent")}),
    "DemoLogin": obj({"enabled": BOOL}, {"username": STR, "password": STR},
                     description="the demo login, while the demo account is on (loopback only)"),
    "ConversationPage": obj({"conversations": array(ref("Conversation")),
                             "next_cursor": {"type": "string", "description": "pass as cursor to go on (or to poll)"},
                             "more": BOOL}),
    "ConversationView": obj({"conversation": ref("Conversation"), "history": array(ref("Conversation"))}),
    "ConversationStarted": obj({"conversation": ref("Conversation"), "events": array(ref("Event"))}),
    "EventPage": obj({"events": array(ref("Event")), "more": BOOL}),
    "EventAnswer": obj({"event": ref("Event")}, {"duplicate": BOOL}),
    "Closed": obj({"event": ref("Event"), "conversation": ref("Conversation")}),
    "Attributes": obj({"attributes": {"type": "object"}}),
    "CustomerAnswer": obj({"customer": ref("Customer")}),
    "ConversationList": obj({"conversations": array(ref("Conversation"))}),
    "QueueList": obj({"queues": array(ref("Queue"))}),
    "AgentList": obj({"agents": array(ref("AgentView"))}),
    "AgentAnswer": obj({"agent": ref("AgentView")}),
    "AgentRecord": obj({"agent": ref("Agent")}),
    "CannedList": obj({"replies": array(ref("CannedReply"))}),
    "CannedAnswer": obj({"reply": ref("CannedReply")}),
    "ApiKeyCreated": obj({"api_key": ref("ApiKey"),
                          "key": {"type": "string", "description": "sgk_<id>_<secret>: shown this once"}}),
    "ApiKeyList": obj({"api_keys": array(ref("ApiKey"))}),
    "WebhookList": obj({"webhooks": array(ref("Webhook"))}),
    "WebhookAnswer": obj({"webhook": ref("Webhook")}),
    "EventTypes": obj({"event_types": array(STR)}),
    "DeliveryList": obj({"deliveries": array(ref("Delivery"))}),
    "DeliveryAnswer": obj({"delivery": ref("Delivery")}),
    "OpenApi": obj({"openapi": STR, "info": ANY_OBJ, "paths": ANY_OBJ}),
}
