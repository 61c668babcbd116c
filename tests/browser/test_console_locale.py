"""The agent console, the wallboard and their sign-in forms in the agent's language (Chromium).

- A Chromium whose languages are zh-CN gets the sign-in form, the console and the wallboard in
  Chinese: through a real chat and a real voice call (widget customer, console agent) monitored
  from the wallboard, no visible text, placeholder, title or aria-label is left in English (names,
  queue names, URLs and what people typed aside). Choosing English during the call keeps the page
  (and the call) until the next load, which comes back in English with the conversation.
- The language menu: a choice made in the console is kept on the agent's account (PATCH
  /api/v1/agents/{id} `locale`) and follows the agent to another browser; bad tags are refused.
- Every console and wallboard message has a zh-CN text with no English and no unknown placeholder.

With SEGUE_SCREENSHOTS=1 the first test also writes docs/screenshots/console-zh-CN.png and
docs/screenshots/wallboard-zh-CN.png (1440x900).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from chat_pages import (
    CUSTOMER_CALL, WAIT_MS, accept_offer, agent_call, agent_login, agent_send, audio_grows, board_login, board_row,
    close_conversation, create_agent, customer_send, english_words, monitor_call, no_english, open_widget, panel,
    panel_item, rest_login, set_presence, slot_grows, start_chat,
)
from media.ice import set_loopback_only

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ZH = {"locale": "zh-CN", "viewport": {"width": 1440, "height": 900}}

# English that may remain on a zh-CN page: the product's name, the demo agent's name, the queue
# names of the default config, the language menu's "English" (each language in its own words),
# key caps (Enter, Shift), and the few words Chinese UIs keep as they are (Markdown, VIP).
ALLOWED_WORDS = {"Segue", "Demo", "Agent", "general", "billing", "English", "Enter", "Shift", "Markdown", "VIP"}

async def test_zh_cn_console_and_wallboard_through_a_chat_and_a_monitored_call(segue: Any, new_page: Any) -> None:
    await create_agent(segue.url, "wang", "wang-secret", "王主管", role="supervisor")
    set_loopback_only(True)  # the server's aiortc legs gather 127.0.0.1 (Chromium: --allow-loopback)
    try:
        customer = await new_page(locale="zh-CN")
        await open_widget(customer, segue.url)
        # no name given: the server calls them "Visitor", the pages show it in their language ("访客")
        cid = await start_chat(customer, "你好，我的订单还没到")
        # the customer's page title and URLs travel with the conversation (the agent sees them): data, not words of ours
        allowed = ALLOWED_WORDS | set(re.findall(r"[A-Za-z]+", await customer.title()))

        # the sign-in form, before anyone is known: the browser's language
        agent = await new_page(**ZH)
        await agent.goto(segue.url + "agent/")
        await expect(agent.locator("#login-submit")).to_have_text("登录", timeout=WAIT_MS)
        assert await agent.evaluate("document.documentElement.lang") == "zh-CN"
        await expect(agent.locator("#demo-login")).to_be_visible(timeout=WAIT_MS)
        await no_english(agent, allowed)
        # a refused sign-in is worded by its code (unauthorized), not with the server's English
        await agent.fill("#login-username", "demo")
        await agent.fill("#login-password", "not-the-password")
        await agent.click("#login-submit")
        await expect(agent.locator("#login-error")).to_have_text("用户名或密码错误，或登录已失效。", timeout=WAIT_MS)
        await no_english(agent, allowed)

        # the console: an offer, the chat, the dialogs
        await agent_login(agent, segue.url)
        await expect(agent.locator("#connection")).to_have_text("已连接")
        await set_presence(agent, "available")
        await expect(agent.locator(f'.offer[data-conversation-id="{cid}"] .offer-accept')).to_have_text("接受", timeout=WAIT_MS)
        await no_english(agent, allowed)
        await accept_offer(agent, cid)
        await agent_send(agent, cid, "您好，我来帮您查一下")
        await customer_send(customer, "订单号是 12345")
        await expect(panel_item(agent, cid, "订单号是 12345")).to_have_count(1, timeout=WAIT_MS)
        await expect(panel_item(agent, cid, "加入了对话")).to_have_count(1, timeout=WAIT_MS)
        await agent_send(agent, cid, "已核实地址", mode="note")
        await panel(agent, cid).locator(".conv-transfer").click()
        await expect(agent.get_by_role("dialog", name="转接会话")).to_be_visible(timeout=WAIT_MS)
        await agent.click("#transfer-cancel")
        await panel(agent, cid).locator(".conv-close").click()
        await expect(agent.get_by_role("dialog", name="结束会话")).to_be_visible(timeout=WAIT_MS)
        await expect(agent.locator("#close-disposition option[value=follow_up]")).to_have_text("需跟进")
        await agent.click("#close-cancel")
        await agent.click("#kb-open")
        await expect(agent.locator("#kb-list")).to_contain_text("还没有文章", timeout=WAIT_MS)
        await no_english(agent, allowed)
        await agent.click("#kb-close")
        await panel(agent, cid).locator(".canned-btn").click()
        await expect(panel(agent, cid).locator(".canned-picker")).to_be_visible(timeout=WAIT_MS)
        await panel(agent, cid).locator(".canned-btn").click()
        await panel(agent, cid).locator('.mode-btn[data-mode="reply"]').click()
        await expect(panel(agent, cid).locator(".conv-send")).to_have_text("发送")

        # a voice call from the widget, answered in the console
        await customer.click("#segue-call")
        bar = panel(agent, cid).locator(".segue-call")
        await expect(bar.locator(".call-accept")).to_have_text("接受", timeout=WAIT_MS)
        await bar.locator(".call-accept").click()
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
        await audio_grows(agent, agent_call(cid), "agent hears the customer")
        await expect(bar.locator(".segue-call-status")).to_contain_text("通话中", timeout=WAIT_MS)

        # the wallboard: a supervisor listens to the call
        board = await new_page(**ZH)
        await board.goto(segue.url + "supervisor/")
        await expect(board.locator("#login-submit")).to_have_text("登录", timeout=WAIT_MS)
        await no_english(board, allowed)
        await board_login(board, segue.url, "wang", "wang-secret")
        row = board_row(board, cid)
        await expect(row.locator(".call-cell-state")).to_contain_text("通话中", timeout=WAIT_MS)
        await expect(row.locator("td").nth(2)).to_have_text("处理中")
        await row.locator(".monitor-listen").click()
        await expect(board.locator("#monitor-status")).to_have_text("正在监听访客与Demo Agent的通话", timeout=WAIT_MS)
        await slot_grows(board, monitor_call(cid), "audio", "the supervisor hears the customer")
        await expect(board.locator("#monitor-connection")).to_have_text("· 音频已连接", timeout=WAIT_MS)
        await expect(bar.locator(".segue-call-supervisor")).to_contain_text("主管王主管正在监听", timeout=WAIT_MS)
        await expect(board.locator("#self-service h3")).to_be_visible(timeout=WAIT_MS)

        console_texts = await no_english(agent, allowed)
        board_texts = await no_english(board, allowed)
        # the checks saw the live parts (a name that is allowed is really there)
        assert any("Demo Agent" in t for t in board_texts) and any("访客" in t for t in console_texts)
        if os.environ.get("SEGUE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await agent.screenshot(path=str(SCREENSHOTS / "console-zh-CN.png"))
            await board.screenshot(path=str(SCREENSHOTS / "wallboard-zh-CN.png"))

        await board.locator("#monitor .monitor-stop").click()
        await expect(board.locator("#monitor-status")).to_have_text("", timeout=WAIT_MS)
        # choosing English during the call does not reload the page (the call would lose its connection)
        await agent.select_option("#language", "en")
        await expect(agent.locator(".toast").filter(has_text="The new language applies")).to_be_visible(timeout=WAIT_MS)
        await expect(agent.locator("#logout")).to_have_text("退出登录")
        await audio_grows(agent, agent_call(cid), "the call goes on")
        await customer.locator("#segue-callbar .call-hangup").click()
        await expect(panel(agent, cid).locator('.conv-log > li[data-type="call.ended"]')).to_contain_text("通话已结束", timeout=WAIT_MS)
        # the next load is in English; the conversation comes back
        await agent.reload()
        await expect(agent.locator("#logout")).to_have_text("Log out", timeout=WAIT_MS)
        await expect(panel(agent, cid).locator(".conv-send")).to_have_text("Send", timeout=WAIT_MS)
        for page in (customer, agent, board):
            assert page.segue_errors == [], page.segue_errors
    finally:
        set_loopback_only(False)


async def _account(base_url: str, token: str, agent_id: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"{base_url}api/v1/agents/{agent_id}") as r:
            return r.status, await r.json()


async def _patch(base_url: str, token: str, agent_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.patch(f"{base_url}api/v1/agents/{agent_id}", json=body) as r:
            return r.status, await r.json()


async def test_the_language_menu_is_kept_on_the_account_and_follows_the_agent(segue: Any, new_page: Any) -> None:
    mei = await create_agent(segue.url, "mei", "mei-secret", "梅")
    first = await new_page()  # an English browser
    await first.goto(segue.url + "agent/")
    await expect(first.locator("#login-submit")).to_have_text("Sign in", timeout=WAIT_MS)
    await expect(first.locator("#language")).to_have_value("en")
    # before signing in: this browser's choice (the page comes back in it)
    await first.select_option("#language", "zh-CN")
    await expect(first.locator("#login-submit")).to_have_text("登录", timeout=WAIT_MS)
    await first.select_option("#language", "en")
    await expect(first.locator("#login-submit")).to_have_text("Sign in", timeout=WAIT_MS)

    # signed in, the choice goes to the account too
    await agent_login(first, segue.url, "mei", "mei-secret")
    await first.select_option("#language", "zh-CN")
    await expect(first.locator("#logout")).to_have_text("退出登录", timeout=WAIT_MS)
    await expect(first.locator("#connection")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await expect(first.locator("#presence option[value=available]")).to_have_text("● 就绪")
    token = await rest_login(segue.url, "mei", "mei-secret")
    status, body = await _account(segue.url, token, mei["id"])
    assert status == 200 and body["agent"]["locale"] == "zh-CN", body

    # another browser, in English, with nothing stored: signing in as mei brings her language
    other = await new_page()
    await other.goto(segue.url + "agent/")
    await expect(other.locator("#login-submit")).to_have_text("Sign in", timeout=WAIT_MS)
    await agent_login(other, segue.url, "mei", "mei-secret")
    await expect(other.locator("#logout")).to_have_text("退出登录", timeout=WAIT_MS)
    assert await other.evaluate("document.documentElement.lang") == "zh-CN"
    await expect(other.locator("#language")).to_have_value("zh-CN")

    # back to English from the menu: saved, and this page speaks English again
    await other.select_option("#language", "en")
    await expect(other.locator("#logout")).to_have_text("Log out", timeout=WAIT_MS)
    status, body = await _account(segue.url, token, mei["id"])
    assert body["agent"]["locale"] == "en", body

    # bad input: a clear error naming the field; another agent's language is not hers to change
    status, body = await _patch(segue.url, token, mei["id"], {"locale": "not a tag!"})
    assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == "locale", body
    status, body = await _patch(segue.url, token, "demo", {"locale": "en"})
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = await _patch(segue.url, token, mei["id"], {"locale": ""})  # back to the browser's
    assert status == 200 and body["agent"]["locale"] is None, body
    for page in (first, other):
        assert page.segue_errors == [], page.segue_errors


async def test_every_console_and_wallboard_message_has_chinese(segue: Any, new_page: Any) -> None:
    page = await new_page()
    await page.goto(segue.url + "widget/blank.html")
    rows = await page.evaluate("""async () => {
        const { MESSAGE_KEYS, translator } = await import("/sdk/i18n.js");
        const en = translator("en"), zh = translator("zh-CN");
        const error = { code: "forbidden", message: "this needs the supervisor role" };
        return {
            rows: MESSAGE_KEYS.map((key) => ({ key, en: en(key), zh: zh(key) })),
            errors: [zh.error(error, "console"), en.error(error, "console"), zh.error({ code: "rate_limited", message: "slow down" }, "console"),
                     zh.error({ code: "brand_new", message: "the server's words" }, "console")],
            percent: [en.percent(0.8), zh.percent(1)],
        };
    }""")
    prefixes = ("console.", "board.", "login.", "presence.", "disposition.", "state.", "language.")
    mine = [r for r in rows["rows"] if r["key"].startswith(prefixes)]
    assert len(mine) > 200
    placeholders = re.compile(r"\{(\w+)\}")
    problems = []
    for r in mine:
        if r["key"] == "language.name":
            continue  # each language names itself
        if english_words([placeholders.sub("", r["zh"])], ALLOWED_WORDS):
            problems.append(("english", r["key"], r["zh"]))
        # the Chinese may leave out the server's {message}, never add a placeholder the page does not fill
        if not set(placeholders.findall(r["zh"])) <= set(placeholders.findall(r["en"])):
            problems.append(("placeholders", r["key"], r["zh"]))
    assert problems == []
    # errors by code: the console's words, the generic ones, else the server's message
    assert rows["errors"] == ["您没有执行此操作的权限。", "this needs the supervisor role", "操作过于频繁，请稍候再试。", "the server's words"]
    assert rows["percent"] == ["80%", "100%"]
    # the page check itself: English is found, URLs and allowed names are not counted
    assert english_words(["保存 Save", "来源：http://127.0.0.1:8080/widget/", "Demo Agent加入了对话"], ALLOWED_WORDS) == ["Save"]
    assert page.segue_errors == []


async def test_zh_cn_warm_transfer_and_the_customers_earlier_conversation(segue: Any, new_page: Any) -> None:
    """The offer of a transfer, the consult banner, the read-only column and the customer's
    earlier conversation (wrap-up, transcript) in Chinese on both agents' consoles."""
    await create_agent(segue.url, "mei", "mei-secret", "梅")
    customer, demo, mei = await new_page(locale="zh-CN"), await new_page(**ZH), await new_page(**ZH)
    await open_widget(customer, segue.url)
    allowed = ALLOWED_WORDS | set(re.findall(r"[A-Za-z]+", await customer.title()))
    first = await start_chat(customer, "自行车链条有异响", name="小李")
    await agent_login(demo, segue.url)
    await set_presence(demo, "available")
    await accept_offer(demo, first)
    await agent_send(demo, first, "请给链条上油")
    await close_conversation(demo, first, "follow_up", "链条")
    await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
    await customer.click("#segue-new-chat")
    second = await start_chat(customer, "现在挡泥板松了")
    await accept_offer(demo, second)

    await agent_login(mei, segue.url, "mei", "mei-secret")
    await set_presence(mei, "available")
    await panel(demo, second).locator(".conv-transfer").click()
    await expect(demo.locator('#transfer-agent option[value="mei"]')).to_contain_text("梅（就绪）", timeout=WAIT_MS)
    await demo.select_option("#transfer-agent", "mei")
    await demo.check("input[name=mode][value=warm]")
    await demo.fill("#transfer-note", "老客户")
    await demo.click("#transfer-submit")
    await expect(panel(demo, second).locator(".conv-banner")).to_contain_text("正在等待梅接受", timeout=WAIT_MS)
    offer = mei.locator(f'.offer[data-conversation-id="{second}"]')
    await expect(offer.locator(".offer-meta")).to_contain_text("来自Demo Agent的咨询转接", timeout=WAIT_MS)
    await no_english(mei, allowed)
    await accept_offer(mei, second)
    await expect(panel(demo, second).locator(".conv-banner")).to_contain_text("梅已接受", timeout=WAIT_MS)
    await agent_send(demo, second, "她是老客户", mode="consult")
    await expect(panel_item(mei, second, "她是老客户")).to_have_count(1, timeout=WAIT_MS)

    # the earlier conversation in mei's customer panel: wrap-up, and its transcript on demand
    history = panel(mei, second).locator(".conv-history")
    await history.locator("summary").click()
    await expect(history.locator(".history-disposition")).to_have_text("处理结果：需跟进", timeout=WAIT_MS)
    await history.locator(f'.history-toggle[data-conversation-id="{first}"]').click()
    await expect(history.locator(".history-transcript")).to_contain_text("请给链条上油", timeout=WAIT_MS)
    await no_english(mei, allowed)
    await no_english(demo, allowed)

    # hand over: demo's column stays, read-only, and says so
    await panel(demo, second).locator(".transfer-complete").click()
    await expect(panel(demo, second).locator(".conv-readonly")).to_contain_text("只读", timeout=WAIT_MS)
    await expect(panel_item(mei, second, "已从Demo Agent转接给梅")).to_have_count(1, timeout=WAIT_MS)
    await no_english(demo, allowed)
    await no_english(mei, allowed)
    for page in (customer, demo, mei):
        assert page.segue_errors == [], page.segue_errors
