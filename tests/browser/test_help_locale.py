"""The public help pages (/kb/, /kb/<slug>, drawn by the server) in the visitor's language (Chromium).

The server writes them in English (readable without script); /help/help.js puts the pages' own
words (`help.*` of web/sdk/i18n.js) in the language chosen like the home page's. An article's own
title and body are the business's words and stay as written. In a zh-CN Chromium no English is left
on the index, a search with no result, an article and the missing-article page; in an English one
the index stays English.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from chat_pages import WAIT_MS, no_english
from segue_clients import World, http

pytestmark = pytest.mark.browser

ALLOWED_WORDS = {"English"}  # the language menu names each language in its own words


async def test_zh_cn_help_pages_leave_no_english(segue: Any, new_page: Any) -> None:
    world = World(segue)
    try:
        token = await world.add_agent("ann")
        status, body = await http("POST", f"{world.url}/api/v1/kb/articles", token=token,
                                  json_body={"title": "退货和退款", "body": "三十天内可以退货。", "status": "published"})
        assert status == 201, body
        slug = body["article"]["slug"]
    finally:
        await world.close()
    page = await new_page(locale="zh-CN")
    base = segue.url.rstrip("/")
    await page.goto(f"{base}/kb/")
    await expect(page.locator("h1")).to_have_text("帮助文章", timeout=WAIT_MS)
    await expect(page.locator("#kb-bar #language")).to_have_value("zh-CN", timeout=WAIT_MS)
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    assert await page.title() == "帮助文章"
    await expect(page.locator("input[name=q]")).to_have_attribute("aria-label", "搜索帮助")
    await expect(page.locator(".kb-list a")).to_have_text("退货和退款")
    await no_english(page, ALLOWED_WORDS)

    await page.locator("input[name=q]").fill("zzzz")
    await page.locator("button[type=submit]").click()
    await expect(page.locator("main p")).to_have_text("没有找到文章。", timeout=WAIT_MS)
    await no_english(page, ALLOWED_WORDS)

    await page.goto(f"{base}/kb/{slug}")
    await expect(page.locator(".kb-crumb a")).to_have_text("帮助文章", timeout=WAIT_MS)
    assert await page.title() == "退货和退款"  # the article's own title
    await no_english(page, ALLOWED_WORDS)

    await page.goto(f"{base}/kb/no-such-article")
    await expect(page.locator("h1")).to_have_text("未找到这篇文章", timeout=WAIT_MS)
    assert await page.title() == "未找到"
    await no_english(page, ALLOWED_WORDS)


async def test_english_help_index_stays_english(segue: Any, new_page: Any) -> None:
    page = await new_page(locale="en-US")
    await page.goto(f"{segue.url.rstrip('/')}/kb/")
    await expect(page.locator("#kb-bar #language")).to_have_value("en", timeout=WAIT_MS)
    await expect(page.locator("h1")).to_have_text("Help articles")
    await expect(page.locator("button[type=submit]")).to_have_text("Search")
    assert await page.evaluate("document.documentElement.lang") == "en"
