"""A verified identity from the embedding site: the same customer on two devices (browser contexts)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat_pages import WAIT_MS, mount_identified_widget, widget_message
from server.auth import sign_identity

pytestmark = pytest.mark.browser

SECRET = "shop-secret-for-tests"


async def test_verified_customer_finds_their_conversation_on_another_device(start_segue, new_page) -> None:
    segue = await start_segue({"auth.sites": {"shop": SECRET}})
    identity = sign_identity(SECRET, id="u-42", name="Ada Lovelace", email="ada@example.com")

    laptop = await new_page()
    await mount_identified_widget(laptop, segue.url, identity)
    session = await laptop.evaluate("window.segueWidget.customer.session")
    assert session["verified"] is True and session["name"] == "Ada Lovelace"
    await laptop.click("#segue-launcher")
    # A verified customer is not asked for a name.
    await expect(laptop.locator("#segue-start-name")).to_have_count(0)
    await laptop.fill("#segue-start-text", "started on my laptop")
    await laptop.click("#segue-start-btn")
    await expect(widget_message(laptop, "started on my laptop")).to_have_count(1, timeout=WAIT_MS)
    cid = await laptop.evaluate("window.segueWidget.conversation.id")

    phone = await new_page()  # another context: no shared storage, a different visitor token
    await mount_identified_widget(phone, segue.url, identity)
    found = await phone.evaluate("""async (cid) => {
        const customer = window.segueWidget.customer;
        const list = await customer.listConversations();
        const c = await customer.openConversation(cid);
        return { ids: list.map((s) => s.id), texts: c.messages.map((e) => e.data.text), name: c.summary.customer.name };
    }""", cid)
    assert cid in found["ids"]
    assert found["texts"] == ["started on my laptop"]
    assert found["name"] == "Ada Lovelace"

    # A forged identity is refused with a clear error, and the widget says so.
    forged = {**identity, "name": "Mallory"}
    intruder = await new_page()
    await intruder.goto(segue.url + "widget/blank.html")
    error = await intruder.evaluate("""async (identity) => {
        const { SegueCustomer } = await import("/sdk/segue.js");
        const customer = new SegueCustomer({ site: "shop", identity });
        try { await customer.connect(); return null; } catch (e) { return { code: e.code, message: e.message }; }
    }""", forged)
    assert error is not None and error["code"] == "bad_identity" and "signature" in error["message"]
    assert laptop.segue_errors == [] and phone.segue_errors == [] and intruder.segue_errors == []
