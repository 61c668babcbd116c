"""Login throttling, per account and per client address, shared by every node through Redis.

Why this shape (OWASP's authentication guidance): guessing must get slow fast, but an attacker
must not be able to lock a real agent out for good by guessing wrong on purpose. So:

- failures are counted per client address (``P login:ip:<addr>``) and per username
  (``P login:acct:<username>``) until there has been none for ``auth.login_window_s``;
- past a limit, each further try must wait ``FIRST_DELAY_S`` doubled per failure since, capped at
  ``auth.login_max_delay_s``: every lockout is bounded, and a refused try is not counted;
- the per-address limit stops one machine guessing many accounts; the per-account limit stops many
  machines guessing one account. An address that logged in to an account successfully before
  (``P login:known:<username>:<addr>``, 30 days) is not slowed by that account's failures from
  elsewhere, so the real agent keeps working during an attack (unless their own address is the
  attacker's);
- a success clears the account's count (not the address's).

Refusals are ``rate_limited`` with ``retry_after_s`` (REST adds ``Retry-After``). Crossing a limit is
logged once, as a warning naming the account or address.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis.asyncio as aioredis

from .errors import ProtocolError

log = logging.getLogger(__name__)

FIRST_DELAY_S = 15
KNOWN_FOR_S = 30 * 86400

# KEYS: address hash, account hash. ARGV: now, TTL. Returns the two counts.
_FAILED = """
local out = {}
for i = 1, 2 do
  out[i] = redis.call('HINCRBY', KEYS[i], 'n', 1)
  redis.call('HSET', KEYS[i], 'last', ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return out
"""


class LoginThrottle:
    """``await check(username, addr)`` before checking a password; then ``failed`` or ``succeeded``."""

    def __init__(self, redis: aioredis.Redis, prefix: str, auth: Any) -> None:
        self.redis = redis
        self.p = prefix
        self.window_s = auth.login_window_s
        self.per_account = auth.login_failures_per_account
        self.per_ip = auth.login_failures_per_ip
        self.max_delay_s = auth.login_max_delay_s

    def _keys(self, username: str, addr: str) -> tuple[str, str, str]:
        return (f"{self.p}login:ip:{addr}", f"{self.p}login:acct:{username}",
                f"{self.p}login:known:{username}:{addr}")

    def delay(self, failures: int, limit: int) -> float:
        """How long after the last failure the next try may come (0: at once)."""
        if failures < limit:
            return 0.0
        return float(min(self.max_delay_s, FIRST_DELAY_S * 2 ** min(failures - limit, 32)))

    async def check(self, username: str, addr: str) -> None:
        ip_key, acct_key, known_key = self._keys(username, addr)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(ip_key, "n", "last")
            pipe.hmget(acct_key, "n", "last")
            pipe.exists(known_key)
            (ip_n, ip_last), (acct_n, acct_last), known = await pipe.execute()
        now = time.time()
        waits = [self._wait(ip_n, ip_last, self.per_ip, now)]
        if not known:
            waits.append(self._wait(acct_n, acct_last, self.per_account, now))
        wait = max(waits)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ProtocolError("rate_limited", f"too many failed logins: try again in {seconds} s",
                                retry_after_s=seconds)

    def _wait(self, n: str | None, last: str | None, limit: int, now: float) -> float:
        if not n or not last:
            return 0.0
        return max(0.0, float(last) + self.delay(int(n), limit) - now)

    async def failed(self, username: str, addr: str) -> None:
        ip_key, acct_key, _ = self._keys(username, addr)
        ttl = max(self.window_s, 2 * self.max_delay_s)
        ip_n, acct_n = await self.redis.eval(_FAILED, 2, ip_key, acct_key, str(time.time()), str(ttl))
        if int(ip_n) == self.per_ip:
            log.warning("login throttled for address %s: %d failed logins", addr, ip_n)
        if int(acct_n) == self.per_account:
            log.warning("login throttled for account %r: %d failed logins", username[:64], acct_n)

    async def succeeded(self, username: str, addr: str) -> None:
        _, acct_key, known_key = self._keys(username, addr)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(acct_key)
            pipe.set(known_key, "1", ex=KNOWN_FOR_S)
            await pipe.execute()
