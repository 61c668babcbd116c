"""One Lua script's calls, pipelined on one Redis connection, replies parsed by hiredis as they arrive.

Every change to a conversation is one ``EVALSHA`` of ``MUTATE`` (signaling/store.py), so this is
the node's busiest path to Redis: one call per chat message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Call:
    """One call of the script: its command in the Redis protocol, its caller's future, when it
    was last written and how many times a broken connection has made it be sent again."""

    command: bytes
    future: asyncio.Future[Any]
    sent_at: float = 0.0
    resent: int = 0


class _Replies(asyncio.Protocol):
    """Stands in for the stream protocol of a connection the batcher holds: bytes go to hiredis
    and each whole reply to the batcher; closing and flow control still go to the stream
    protocol redis-py made, so the connection's own writer learns that it closed (the pool's
    ``disconnect`` waits for that) and pauses when the socket's buffer is full."""

    def __init__(self, stream: asyncio.BaseProtocol, batcher: "ScriptBatcher", encoding: str | None) -> None:
        self.stream = stream
        self.batcher = batcher
        self.transport: asyncio.Transport | None = None
        self._parser = hiredis.Reader(replyError=ResponseError, encoding=encoding)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while True:
            try:
                reply = self._parser.gets()
            except hiredis.ProtocolError as exc:  # out of step: nothing more on it can be trusted
                log.warning("Redis sent what is not its protocol (%s); closing the connection", exc)
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:  # hiredis: no whole reply yet (a script's reply is never a boolean)
                return
            self.batcher._answer(self, reply)

    def eof_received(self) -> bool | None:
        self.stream.eof_received()  # type: ignore[attr-defined]
        # Redis closed its side (it stopped, or killed this client): close ours too, so
        # ``connection_lost`` fails or re-sends the calls in flight now. The stream protocol would
        # keep a half-closed socket open, and the calls would wait out the socket timeout.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream.connection_lost(exc)
        self.batcher._lost(self, exc)

    def pause_writing(self) -> None:
        self.stream.pause_writing()

    def resume_writing(self) -> None:
        self.stream.resume_writing()


@dataclass
class _Link:
    """The connection the batcher holds: redis-py's (it made it: TLS, auth, database, Sentinel's
    current primary) and the transport whose replies now come to ``_Replies``."""

    conn: Any
    transport: asyncio.Transport
    replies: _Replies


class ScriptBatcher:
    """Calls of one Lua script, pipelined on one connection of the client's pool.

    Why: redis-py's per-call path (a pool checkout, a ``Script`` object, retry and telemetry
    wrappers, a timeout per read) cost about 100 µs of CPU per call, a fifth of a chat message's
    server CPU. Writing ``EVALSHA`` on a held connection but reading it through redis-py's
    connection (a task per batch, a stream reader, a deadline) still cost 66 µs per single call;
    with the replies parsed by hiredis in the connection's protocol, as the bytes arrive, it costs
    29-33 µs (a bare asyncio protocol writing the same calls: 20). ``bench.chat`` measures what a
    message costs the node.

    How: calls made while a batch is in flight wait and go together as the next batch (one write),
    sent as soon as the last reply of the batch in flight is read; with nothing in flight, a call
    goes on the next turn of the loop but no sooner than ``MIN_GAP_S`` after the last batch.
    Replies come back in order.
    The connection is one of the client's pool, made by redis-py, so TLS, auth, the database and
    Sentinel's current primary all apply; the batcher only takes over its transport's protocol
    (redis-py keeps it in the private ``_writer``: the one private name this module relies on).

    Failures, as the client's settings say:

    - a batch not answered within the pool's ``socket_timeout`` closes the connection;
    - a broken connection: the calls in flight are sent again on a new connection as many times
      as the client's retry policy allows (``Retry.get_retries()``, 0 by default: they fail with
      the error), the calls not yet sent go on the new one; connecting follows the retry policy;
    - ``NOSCRIPT`` (Redis restarted or its scripts flushed): the script is loaded again and those
      calls run again;
    - ``READONLY`` (the server was demoted to a replica): as a broken connection, so the next
      connection goes to the current primary (Sentinel) and the callers hear ``ConnectionError``
      ("retry shortly"), not a script error.

    Order: calls for one conversation never overlap (the service holds the conversation's lock
    across its call), so calls re-sent after a failure cannot overtake a later one of theirs.
    """

    #: with nothing in flight, a call made less than this after the last batch went waits for the
    #: rest of it (its answer comes at most 1 ms later), and the calls made meanwhile join it.
    #: Each batch costs the node a send and a receive and wakes Redis; at 2,800 msg/s open loop
    #: (60 % of capacity) batches carried one or two calls, and with this gap the node's CPU per
    #: message fell from 293-311 to 266-292 µs and p99 from 27-41 to 19-46 ms (four pairs,
    #: bench.chat). An idle node's first call goes at once (the next turn of the loop), as before.
    MIN_GAP_S = 0.001

    def __init__(self, redis: aioredis.Redis, script: Any) -> None:
        self.redis = redis
        self.script = script
        self._pending: list[_Call] = []
        self._sent: deque[_Call] = deque()
        self._noscript: list[_Call] = []
        self._link: _Link | None = None
        self._flush_soon = False
        self._busy: asyncio.Task[None] | None = None  # connecting or loading the script
        self._deadline: asyncio.TimerHandle | None = None
        self._timeout: float | None = None  # the pool's socket timeout: a batch's deadline
        self._retries = 0
        self._last_flush = 0.0  # loop time the last batch was written

    def __call__(self, keys: list[str], args: list[str]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        command = hiredis.pack_command((b"EVALSHA", self.script.sha, len(keys), *keys, *args))
        self._pending.append(_Call(command, future))
        if not self._flush_soon and not self._sent and self._busy is None:
            # next turn (the calls made in this one go as one batch), or MIN_GAP_S after the last
            # batch went, whichever is later
            self._flush_soon = True
            loop.call_at(max(loop.time(), self._last_flush + self.MIN_GAP_S), self._flush)
        return future

    # ------------------------------------------------------------------ sending and answering

    def _flush(self) -> None:
        self._flush_soon = False
        if not self._pending or self._sent or self._busy is not None:
            return  # nothing to send, a batch in flight (sent when answered), or (re)connecting
        if self._link is None:
            self._start(self._connect())
            return
        batch, self._pending = self._pending, []
        now = asyncio.get_running_loop().time()
        self._last_flush = now
        for call in batch:
            call.sent_at = now
        self._sent.extend(batch)
        self._link.transport.write(b"".join(call.command for call in batch))
        if self._deadline is None and self._timeout:
            self._deadline = asyncio.get_running_loop().call_at(now + self._timeout, self._check_deadline)

    def _answer(self, replies: _Replies, reply: Any) -> None:
        if self._link is None or replies is not self._link.replies or not self._sent:
            return  # a connection already given up
        call = self._sent.popleft()
        if isinstance(reply, ResponseError):
            if "READONLY" in str(reply)[:200]:
                # the server became a replica (a Sentinel failover demoted it; a script's write
                # comes back wrapped in "ERR Error running script", which redis-py does not
                # recognise): nothing was written, and nothing will be on this connection. As
                # redis-py's Sentinel connection does, give it up: the next one is to the primary
                self._sent.appendleft(call)
                self._give_up(RedisConnectionError(
                    "Redis answered that it is a read-only replica now (a failover?): retry shortly"))
                return
            if str(reply).startswith("NOSCRIPT"):
                self._noscript.append(call)
            elif not call.future.done():
                call.future.set_exception(reply)
        elif not call.future.done():
            call.future.set_result(reply)
        if not self._sent:
            if self._noscript:
                self._start(self._load_script())
            else:
                self._flush()

    def _check_deadline(self) -> None:
        """One timer for the oldest call in flight (not one per batch): re-armed for the next
        oldest until nothing is in flight."""
        self._deadline = None
        if not self._sent or self._link is None or not self._timeout:
            return
        due = self._sent[0].sent_at + self._timeout
        loop = asyncio.get_running_loop()
        if loop.time() < due:
            self._deadline = loop.call_at(due, self._check_deadline)
            return
        self._give_up(RedisTimeoutError(f"Timeout talking to Redis ({self._timeout} s)"))

    # ------------------------------------------------------------------ failures

    def _lost(self, replies: _Replies, exc: Exception | None) -> None:
        if self._link is None or replies is not self._link.replies:
            return
        self._give_up(RedisConnectionError(f"Connection to Redis lost ({exc or 'closed by the server'})"))

    def _give_up(self, error: Exception) -> None:
        """The connection held is done with: its calls in flight are sent again (as the retry
        policy allows, first in line) or fail with ``error``; the connection goes back to the pool."""
        link, self._link = self._link, None
        assert link is not None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        again: list[_Call] = []
        spent: list[_Call] = []
        for call in [*self._sent, *self._noscript]:
            call.resent += 1
            (again if call.resent <= self._retries else spent).append(call)
        _fail(spent, error)
        self._sent.clear()
        self._noscript.clear()
        self._pending[:0] = again
        link.transport.abort()
        asyncio.get_running_loop().create_task(self._release(link.conn))
        if self._pending and self._busy is None:
            self._start(self._connect())

    async def _release(self, conn: Any) -> None:
        try:
            await conn.disconnect(nowait=True)
        finally:
            await self.redis.connection_pool.release(conn)

    # ------------------------------------------------------------------ slow paths (tasks)

    def _start(self, work: Any) -> None:
        self._busy = asyncio.get_running_loop().create_task(work)

    async def _connect(self) -> None:
        """A connection of the pool (Sentinel: to the current primary), its replies taken over;
        attempts as the client's retry policy says. Then whatever waits is sent."""
        try:
            conn = await self.redis.connection_pool.get_connection()
            self._retries = conn.retry.get_retries()

            async def attempt() -> None:
                if not conn.is_connected:
                    await conn.connect()  # through the pool's kind of connection (Sentinel asks again)

            async def failed(error: Exception) -> None:
                await conn.disconnect(nowait=True)

            try:
                await conn.retry.call_with_retry(attempt, failed)
                transport = conn._writer.transport  # see the class docstring
                replies = _Replies(transport.get_protocol(), self,
                                   conn.encoder.encoding if conn.encoder.decode_responses else None)
                replies.transport = transport
                transport.set_protocol(replies)
            except BaseException:
                await self._release(conn)
                raise
            self._timeout = conn.socket_timeout
            self._link = _Link(conn, transport, replies)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must hear about it
            self._busy = None
            pending, self._pending = self._pending, []
            _fail(pending, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._busy = None
        self._flush()

    async def _load_script(self) -> None:
        calls, self._noscript = self._noscript, []
        try:
            await self.redis.script_load(self.script.script)
        except BaseException as exc:  # noqa: BLE001
            self._busy = None
            _fail(calls, NoScriptError(f"the script could not be loaded again: {exc}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._flush()
            return
        self._busy = None
        self._pending[:0] = calls
        self._flush()


def _fail(calls: list[_Call], error: BaseException) -> None:
    """Tell the callers still waiting: ``error``, or cancelled when it is a cancellation (the node
    stopping)."""
    for call in calls:
        if call.future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            call.future.cancel()
        else:
            call.future.set_exception(error)
