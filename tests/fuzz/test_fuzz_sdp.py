"""Property tests (hypothesis) on SDP handling (issue 11): mutated real offers, answered by a real
server leg (aiortc behind ``media.sdp_limits``), end in ``LegError`` (-> ``invalid``) or a valid
answer — never another exception (``internal``), never an answer outside Segue's limits.

The offer is a real aiortc offer shaped like ``web/sdk/call.js``'s (audio, camera, screen share);
each example applies a few line-level mutations: delete, duplicate, swap, a number replaced by
another (huge, negative, zero), an attribute's value replaced by random text, a random line, a
truncation. Bounded by example count.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import Forwarder, loopback_only
from media.leg import CallLeg, LegError
from media.probe import ClientPeer
from media.sdp_limits import MAX_M_SECTIONS, SdpRefused, check_offer

CORPUS = Path(__file__).parent / "corpus" / "sdp"
NUMBERS = st.sampled_from([0, -1, 1, 15, 16, 127, 128, 255, 256, 300, 65535, 65536, 2**31, 2**32, 2**64, 10**30])
MUTATION = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 200)),
    st.tuples(st.just("duplicate"), st.integers(0, 200)),
    st.tuples(st.just("swap"), st.integers(0, 200), st.integers(0, 200)),
    st.tuples(st.just("number"), st.integers(0, 200), NUMBERS | st.integers()),
    st.tuples(st.just("value"), st.integers(0, 200), st.text(max_size=30)),
    st.tuples(st.just("insert"), st.integers(0, 200),
              st.sampled_from(["a=mid:", "a=extmap:", "a=fingerprint:", "a=candidate:", "a=group:BUNDLE ", "m=audio ",
                               "a=rtpmap:", "a=ssrc:", "a=ssrc-group:FID ", "a=setup:", "a=ice-pwd:", "a="]),
              st.text(max_size=40)),
    st.tuples(st.just("truncate"), st.integers(0, 20000)),
)


def mutate(offer: str, mutations: list[tuple[Any, ...]]) -> str:
    lines = offer.split("\r\n")
    for m in mutations:
        n = len(lines)
        if not n:
            break
        kind, i = m[0], m[1] % n
        if kind == "delete" and i:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap" and i:
            j = m[2] % n or 1
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "number":
            lines[i] = re.sub(r"\d+", str(m[2]), lines[i], count=1)
        elif kind == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ":" + m[2].replace("\r", "").replace("\n", "")
        elif kind == "insert":
            lines.insert(i or 1, (m[2] + m[3]).replace("\r", "").replace("\n", ""))
        elif kind == "truncate":
            return "\r\n".join(lines)[: m[1]]
    return "\r\n".join(lines)


@pytest.fixture(scope="module")
def offer() -> str:
    async def make() -> str:
        with loopback_only():
            return await ClientPeer.unanswered_offer()

    text = asyncio.run(make())
    CORPUS.mkdir(parents=True, exist_ok=True)
    seed = CORPUS / "aiortc-offer-audio-video-screen.sdp"
    if not seed.exists():
        seed.write_text(text)
    return text


outcomes: dict[str, int] = {}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4))
async def test_mutated_offers_get_invalid_or_a_valid_answer(offer: str, mutations: list[tuple[Any, ...]]) -> None:
    sdp = mutate(offer, mutations)
    try:
        check_offer(sdp)
    except SdpRefused:
        outcomes["refused_by_limits"] = outcomes.get("refused_by_limits", 0) + 1
        return
    with loopback_only():
        leg = CallLeg(Forwarder(), role="customer", participant="fuzz")
        try:
            answer = await leg.answer(sdp)
        except LegError:
            outcomes["refused_by_aiortc"] = outcomes.get("refused_by_aiortc", 0) + 1
            return
        finally:
            await leg.close()
    assert answer.startswith("v=0")
    assert answer.count("\nm=") <= MAX_M_SECTIONS
    outcomes["answered"] = outcomes.get("answered", 0) + 1


def test_report_sdp_fuzz_counts() -> None:
    from hostile_kit import report

    report("mutated_offers", sum(outcomes.values()), outcomes=outcomes, internal=0, crashes=0)
