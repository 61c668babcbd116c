"""The search building blocks without a server: words from what people type, highlight offsets,
Chinese text, deleting and re-adding by key, parameter checks, Markdown made safe, slugs."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from server.config import ConfigError, load_config
from signaling.errors import ProtocolError
from signaling.knowledge import render_markdown, slugify
from signaling.search import may_have_words, parse_search, words_in
from signaling.textindex import Field, TextIndex, char_ranges, plain_query


def _index(**kw: object) -> TextIndex:
    return TextIndex([Field("key", "key"), Field("text", "text"), Field("ts", "int")], **kw)  # type: ignore[arg-type]


def test_plain_query_keeps_words_only() -> None:
    assert plain_query('title:"Refund" AND (order*) -x ^2') == "title refund and order x 2"
    assert plain_query("  ") == "" and plain_query("()[]{}") == ""
    assert plain_query("退款 申请") == "退款 申请"


def test_highlights_are_character_offsets() -> None:
    text = "价格 price"
    start = len("价格 ".encode())
    assert char_ranges(text, [(start, start + 5)]) == [[3, 8]]


def test_chinese_and_english_search_and_replace_by_key() -> None:
    index = _index()
    index.add({"key": "a", "text": "如何申请退款？", "ts": 1})
    index.add({"key": "b", "text": "Where is my parcel?", "ts": 2})
    index.commit()
    q = index.text_query("退款", ["text"], all_words=True)
    assert [h["key"] for h in index.search(q, 10)] == ["a"]
    q = index.text_query("PARCEL!", ["text"], all_words=True)
    hits = index.search(q, 10, snippet_field="text", snippet_query=q)
    assert [h["key"] for h in hits] == ["b"]
    start, end = hits[0]["_snippet"]["highlights"][0]
    assert hits[0]["_snippet"]["text"][start:end] == "parcel"
    index.delete("key", "b")
    index.add({"key": "b", "text": "Where is my bike?", "ts": 3})
    index.commit()
    assert index.search(index.text_query("parcel", ["text"], all_words=True), 10) == []
    newest = index.search(index.all_of([]), 10, newest_by="ts")
    assert [h["key"] for h in newest] == ["b", "a"]


def test_stop_words_do_not_make_a_match() -> None:
    index = _index(stop_words="english")
    index.add({"key": "a", "text": "The shipping times of the parcels", "ts": 1})
    index.commit()
    assert index.text_query("the of", ["text"], all_words=False) is None  # an empty query would match all
    assert len(index.search(index.text_query("the parcels", ["text"], all_words=False), 10)) == 1


def test_words_in_events() -> None:
    assert words_in("message", {"text": "hi"}) == "hi"
    assert words_in("conversation.closed", {"disposition": "resolved", "tags": ["vip", "refund"]}) == "resolved vip refund"
    assert words_in("transfer.requested", {"note": "angry"}) == "angry"
    assert words_in("conversation.assigned", {"agent": {"name": "x"}}) == ""
    assert words_in("message", "not a dict") == ""


def test_only_types_that_may_have_words_are_decoded() -> None:
    """The catch-up skips, undecoded, events whose type fails ``may_have_words``: every type
    ``words_in`` finds words in must pass it."""
    wordy = [("message", {"text": "hi"}), ("note", {"text": "hi"}), ("consult.message", {"text": "hi"}),
             ("conversation.closed", {"disposition": "resolved"}), ("conversation.rated", {"comment": "ok"}),
             ("transfer.requested", {"note": "angry"}), ("transfer.accepted", {"note": "ok"})]
    for type_, data in wordy:
        assert words_in(type_, data) and may_have_words(type_), type_
    for type_ in ("typing", "conversation.assigned", "call.signal", "page.viewed", ""):
        assert not may_have_words(type_), type_


@pytest.mark.parametrize("params, field", [
    ({}, "q"), ({"q": "x", "limit": "0"}, "limit"), ({"q": "x", "from": "soon"}, "from"),
    ({"q": "x", "customer": "a/b"}, "customer"), ({"q": "x", "sort": "new"}, "sort"), ({"q": "x" * 201}, "q"),
    ({"q": "x", "from": "2025-02-01", "to": "2025-01-01"}, "from"),
])
def test_search_parameters_are_checked(params: dict[str, str], field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_search(params)
    assert err.value.code == "invalid" and err.value.field == field


def test_a_bare_to_date_covers_the_day() -> None:
    q = parse_search({"customer": "u_1", "to": "2025-01-01"})
    assert q.until_ms == 1735689600000 + 86_400_000 - 1 and q.text == ""


class _Markup(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@pytest.mark.parametrize("source", [
    "<script>alert(1)</script>", "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "<img src=x onerror=alert(1)>",
    "![i](javascript:alert(1))", "[x](data:text/html;base64,PHNjcmlwdD4=)", '<a href="javascript:x">a</a>',
    "[x](vbscript:msgbox)", "<iframe src=https://evil.example></iframe>", "[x](java\tscript:alert(1))",
    "<details open ontoggle=alert(1)>", "[x](<javascript:alert(1)>)",
])
def test_markdown_never_yields_active_markup(source: str) -> None:
    for tag, attrs in _Markup(render_markdown(source)).tags:
        assert tag in ("p", "a", "img"), (source, tag)
        for name, value in attrs:
            assert not name.startswith("on"), (source, name)
            assert not (value or "").strip().lower().startswith(("javascript", "vbscript", "data:")), (source, value)


def test_markdown_keeps_formatting_and_safe_links() -> None:
    html = render_markdown("**bold** [shop](https://shop.example/a?b=1) [rel](/kb/other)\n\n| a |\n|---|\n| 1 |")
    assert "<strong>bold</strong>" in html and "<table>" in html
    assert '<a href="https://shop.example/a?b=1" rel="noopener noreferrer nofollow">shop</a>' in html
    assert 'href="/kb/other"' in html


def test_slugs() -> None:
    assert slugify("Réinitialiser  le mot-de-passe!") == "reinitialiser-le-mot-de-passe"
    assert slugify("重置密码") == ""


def test_knowledge_settings_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="knowledge.search_sync_s"):
        load_config(environ={"SEGUE_KNOWLEDGE_SEARCH_SYNC_S": "0"})
