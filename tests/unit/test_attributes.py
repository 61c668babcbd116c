"""The custom-attribute map of the protocol (``schema.check_attributes``): what is accepted, and
that every refusal names the field the way docs/protocol.md promises."""

from __future__ import annotations

from typing import Any

import pytest

from signaling import messages as m
from signaling.errors import ProtocolError
from signaling.schema import check_attributes, validate


def test_accepted_values_and_null_deletes() -> None:
    attrs = {"plan": "pro", "order_id": "A-1001", "seats": 12, "ratio": 0.5, "vip": True, "trial": False,
             "gone": None, "x.y-z_1": "", "a" * 64: "k"}
    assert check_attributes(attrs) == attrs
    start = validate(m.ConversationStart, {"channel": "video", "attributes": {"plan": "pro", "old": None}})
    assert start.channel == "video" and start.attributes == {"plan": "pro", "old": None}
    assert validate(m.AttributesSet, {"attributes": {}}).attributes == {}


@pytest.mark.parametrize("attrs, field, words", [
    ("pro", "attributes", "must be an object"),
    ([1], "attributes", "must be an object"),
    ({f"k{i}": i for i in range(51)}, "attributes", "at most 50 keys"),
    ({"1plan": 1}, "attributes.1plan", "start with a letter"),
    ({"": 1}, "attributes.", "start with a letter"),
    ({"a" * 65: 1}, "attributes." + "a" * 65, "up to 64"),
    ({"pl an": 1}, "attributes.pl an", "letters, digits"),
    ({"plan": "x" * 1001}, "attributes.plan", "at most 1000 characters"),
    ({"plan": float("nan")}, "attributes.plan", "finite"),
    ({"plan": float("inf")}, "attributes.plan", "finite"),
    ({"plan": 2**53 + 1}, "attributes.plan", "between"),
    ({"plan": [1, 2]}, "attributes.plan", "text, a number, true/false or null"),
    ({"plan": {"tier": 1}}, "attributes.plan", "text, a number, true/false or null"),
])
def test_refusals_name_the_field(attrs: Any, field: str, words: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        validate(m.AttributesSet, {"attributes": attrs})
    assert exc.value.code == "invalid" and exc.value.field == field[:120]
    assert words in exc.value.message


@pytest.mark.parametrize("payload, field", [
    ({"url": "ftp://shop.example/"}, "url"),
    ({"url": "https://"}, "url"),
    ({"url": "https://shop example/"}, "url"),
    ({"url": "shop.example/cart"}, "url"),
    ({"url": "https://shop.example/", "title": 5}, "title"),
])
def test_page_view_urls(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        validate(m.PageView, payload)
    assert exc.value.field == field
    assert validate(m.PageView, {"url": "HTTP://Shop.Example/a?b=1#c"}).url == "HTTP://Shop.Example/a?b=1#c"
