"""Which addresses webhook deliveries may go to (signaling/destinations.py): public ones only."""

from __future__ import annotations

import pytest

from signaling.destinations import PrivateDestination, check_public, refusal


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.0.0.5", "private"), ("172.16.0.1", "private"), ("192.168.0.1", "private"), ("fd12::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("100.64.0.1", "not a public"),
])
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(address)
    assert reason is not None and reason.startswith(f"{address} is") and kind in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "example.com"])
def test_public_addresses_and_names_pass(address: str) -> None:
    assert refusal(address) is None


async def test_names_are_checked_by_what_they_resolve_to() -> None:
    with pytest.raises(PrivateDestination, match="localhost resolves to 127.0.0.1, a loopback address"):
        await check_public("localhost", 80)
    with pytest.raises(PrivateDestination, match="10.9.8.7 is a private address"):
        await check_public("10.9.8.7", 80)
    await check_public("no-such-name.invalid", 443)  # unresolvable now: every delivery checks again
    await check_public("8.8.8.8", 443)
