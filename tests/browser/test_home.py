"""Real Chromium renders the demo home page."""

import pytest

pytestmark = pytest.mark.browser


async def test_home_renders_in_chromium(segue, new_page) -> None:
    page = await new_page()
    await page.goto(segue.url)
    assert await page.text_content("#title") == "Segue"
    links = await page.eval_on_selector_all("#pages a", "els => els.map(e => e.getAttribute('href'))")
    assert "/widget/" in links and "/agent/" in links
    # The stylesheet really applied (not just the HTML).
    colour = await page.eval_on_selector("#title", "e => getComputedStyle(e).color")
    assert colour == "rgb(47, 111, 237)"
    assert page.segue_errors == []
