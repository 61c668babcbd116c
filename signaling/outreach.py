"""Conversations a server starts (proactive outreach) and the voices a server writes with.

Why a module of its own: the customer-facing ``Signaling.start`` and ``send_message`` are about
who is on the socket; here the caller is a server (an API key) or an agent using the REST API,
writing *to* a customer who may not be online. The customer's open widgets see the new
conversation and its messages at once (the ``customer:<id>`` room), and the conversation keeps
the same state machine, log and routing as any other.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .errors import forbidden, invalid, not_found

if TYPE_CHECKING:
    from .service import Principal, Signaling


async def customer_for(svc: "Signaling", customer_id: str | None, identity: Any) -> "Principal":
    """The customer a server names: by Segue's id, or by its own identity on a site (the API key
    vouches for it, so no HMAC). The identity maps to the same customer as a widget visitor
    signed in with that site and id."""
    from .service import Principal, _customer_id_for

    if (customer_id is None) == (identity is None):
        raise invalid("customer_id", "give exactly one of customer_id or identity {site, id, name?, email?}")
    if customer_id is not None:
        record = await svc.store.customer(customer_id)
        if record.get("merged_into"):  # a visitor who signed in later: their identity's record
            customer_id = record["merged_into"]
            record = await svc.store.customer(customer_id)
        if not record:
            raise not_found(f"customer {customer_id}")
        return Principal("customer", customer_id, record.get("name") or "Visitor", record.get("email", ""),
                         bool(record.get("verified")))
    cust_id = _customer_id_for(identity.site, identity.id)
    record = await svc.store.customer(cust_id)
    fields = {"id": cust_id, "site": identity.site, "external_id": identity.id, "verified": "1"}
    if identity.name:
        fields["name"] = identity.name
    if identity.email:
        fields["email"] = identity.email
    if not record:
        fields["created_ts"] = str(int(time.time() * 1000))
    await svc.store.save_customer(cust_id, fields)
    record = {**record, **fields}
    return Principal("customer", cust_id, record.get("name") or "Visitor", record.get("email", ""), True)


async def start_outbound(svc: "Signaling", caller: "Principal", body: Any) -> dict[str, Any]:
    """Start a conversation for a customer; ``body`` is a ``messages.ConversationCreate``."""
    from .service import summary

    if body.agent is not None:
        await svc.directory.require(body.agent)
    customer = await customer_for(svc, body.customer_id, body.identity)
    started = await svc.start(customer, body.queue, "chat", {}, body.text, attributes=body.attributes,
                              started_by=caller, offer_agent=body.agent)
    cid = started["conversation"]["id"]
    h = await svc.store.conversation(cid)
    return {"conversation": summary(h), "events": started["events"]}


async def speaker(svc: "Signaling", caller: "Principal", as_: Any, cid: str) -> "Principal":
    """Who a REST message is written as: the caller, one of the agents (API keys only: the agent
    must be working on the conversation) or a named bot (API keys only)."""
    from .service import Principal

    if as_ is None:
        return caller
    if not caller.is_server:
        if as_.kind == "agent" and as_.id in (None, caller.id):
            return caller
        raise forbidden("agents write as themselves: only an API key may write as another agent or as a bot")
    if as_.kind == "bot":
        if not as_.name or as_.id is not None:
            raise invalid("as.name", 'a bot is named: {"kind": "bot", "name": "Billing bot"}')
        return Principal("bot", caller.id, as_.name, scopes=caller.scopes)
    if not as_.id or as_.name is not None:
        raise invalid("as.id", 'an agent is given by id: {"kind": "agent", "id": "ada"}')
    account = await svc.directory.get(as_.id)
    if account is None:
        raise not_found(f"agent {as_.id!r}")
    if account.id not in await svc.store.active(cid):
        await svc._conversation(cid)  # not_found first
        raise forbidden(f"agent {account.id} is not working on conversation {cid}: only its agents write as themselves")
    return Principal("agent", account.id, account.name, account=account)
