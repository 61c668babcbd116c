"""The agent console shows what travels with the customer: the custom attributes the site set (and
their changes, live) and the pages the customer viewed before and during the conversation —
driven from a real customer page through the SDK, seen in the real console, in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from chat_pages import WAIT_MS, accept_offer, agent_call, agent_login, panel, set_presence, slot_grows, wait_js

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__pwned=1">'


async def test_console_shows_attributes_and_pages_live(segue: Any, new_page: Any) -> None:
    customer = await new_page()
    await customer.goto(segue.url)
    # the site: pages viewed before asking for help, then a conversation with attributes
    cid = await customer.evaluate("""async (xss) => {
        const { SegueCustomer } = await import("/sdk/segue.js");
        const c = new SegueCustomer();
        window.segueCustomer = c;
        await c.connect();
        await c.pageView({ url: "https://shop.example/pricing", title: "Pricing" });
        await c.pageView({ url: "https://shop.example/cart", title: xss });
        await c.pageView();  // defaults: this page's location and title
        const conversation = await c.startConversation({
            text: "Question about my order",
            attributes: { plan: "pro", order_id: "A-1001", seats: 12 },
        });
        return conversation.id;
    }""", XSS)

    agent = await new_page()
    await agent_login(agent, segue.url)
    await set_presence(agent, "available")
    await accept_offer(agent, cid)
    p = panel(agent, cid)
    section = p.locator(".conv-customer")
    await expect(section).to_be_visible(timeout=WAIT_MS)
    await expect(section.locator('.conv-attribute[data-key="plan"] dd')).to_have_text("pro", timeout=WAIT_MS)
    await expect(section.locator('.conv-attribute[data-key="order_id"] dd')).to_have_text("A-1001")
    await expect(section.locator('.conv-attribute[data-key="seats"] dd')).to_have_text("12")
    pages = section.locator(".conv-page")
    await expect(pages).to_have_count(3)
    # latest first; the customer's own page (SDK defaults) is the newest
    await expect(pages.nth(0).locator(".conv-page-url")).to_have_text(segue.url)
    await expect(pages.nth(1).locator(".conv-page-title")).to_have_text(XSS)  # text, never HTML
    await expect(pages.nth(1).locator(".conv-page-url")).to_have_text("https://shop.example/cart")
    await expect(pages.nth(2).locator(".conv-page-title")).to_have_text("Pricing")
    assert await pages.nth(1).locator("img").count() == 0

    # during the conversation: a new page and changed attributes appear without a reload
    await customer.evaluate("""async () => {
        const c = window.segueCustomer;
        await c.pageView({ url: "https://shop.example/checkout", title: "Checkout" });
        await c.setAttributes({ plan: "enterprise", seats: null, vip: true });
    }""")
    await expect(pages).to_have_count(4, timeout=WAIT_MS)
    await expect(pages.nth(0).locator(".conv-page-title")).to_have_text("Checkout")
    await expect(section.locator('.conv-attribute[data-key="plan"] dd')).to_have_text("enterprise", timeout=WAIT_MS)
    await expect(section.locator('.conv-attribute[data-key="vip"] dd')).to_have_text("true")
    await expect(section.locator('.conv-attribute[data-key="seats"]')).to_have_count(0)
    # the log says what changed (agents only)
    log = p.locator('.conv-log > li[data-type="attributes.updated"]')
    await expect(log.last).to_contain_text("plan = enterprise", timeout=WAIT_MS)
    await expect(p.locator('.conv-log > li[data-type="page.viewed"]').last).to_contain_text("Checkout")

    # a bad attribute is refused with the field named, and nothing changes
    error = await customer.evaluate("""async () => {
        try { await window.segueCustomer.setAttributes({ "bad key": 1 }); return null; }
        catch (e) { return { code: e.code, field: e.field }; }
    }""")
    assert error == {"code": "invalid", "field": "attributes.bad key"}

    # a reloaded console gets the trail and the attributes back
    await agent.reload()
    p = panel(agent, cid)
    await expect(p.locator(".conv-customer .conv-page")).to_have_count(4, timeout=WAIT_MS)
    await expect(p.locator('.conv-attribute[data-key="plan"] dd')).to_have_text("enterprise")
    assert await agent.evaluate("() => window.__pwned") is None
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_video_call_from_the_web_starts_with_cameras_on(segue: Any, new_page: Any) -> None:
    """A customer starts a conversation on the "video" channel and asks for a video call through
    the SDK; the console's offer says video; once the agent accepts the call, camera frames flow
    both ways without anyone pressing "Camera on"."""
    customer = await new_page()
    await customer.goto(segue.url)
    cid = await customer.evaluate("""async () => {
        const { SegueCustomer } = await import("/sdk/segue.js");
        const { SegueCall } = await import("/sdk/call.js");
        const c = new SegueCustomer();
        await c.connect();
        const conversation = await c.startConversation({ channel: "video", name: "Ada" });
        window.segueCall = new SegueCall(c, conversation.id);
        await window.segueCall.request("voice", { video: true, pageUrl: location.href });
        return conversation.id;
    }""")
    agent = await new_page()
    await agent_login(agent, segue.url)
    await set_presence(agent, "available")
    offer = agent.locator(f'.offer[data-conversation-id="{cid}"]')
    await expect(offer.locator(".offer-channel")).to_have_text("Video", timeout=WAIT_MS)
    await expect(offer.locator(".offer-call")).to_have_text("Incoming video call")
    # answering the offer answers the video call too (one click)
    await accept_offer(agent, cid)
    # each side's camera reaches the other (decoded frames on the camera transceiver)
    await slot_grows(agent, agent_call(cid), "camera", "agent sees the customer's camera", by=10, field="frames")
    await slot_grows(customer, "window.segueCall", "camera", "customer sees the agent's camera", by=10, field="frames")
    sending = await customer.evaluate("() => Boolean(window.segueCall.localVideo().camera)")
    assert sending is True
    # hanging up turns both cameras off (their tracks end), the chat goes on
    await agent.evaluate(f"() => {{ window.__camera = {agent_call(cid)}.localVideo().camera; }}")
    ended = await customer.evaluate("""async () => {
        const camera = window.segueCall.localVideo().camera;
        await window.segueCall.hangup();
        return camera.readyState;
    }""")
    assert ended == "ended"
    await wait_js(agent, "() => window.__camera && window.__camera.readyState === 'ended'", timeout=WAIT_MS)
    assert customer.segue_errors == [] and agent.segue_errors == []
