"""One Redis reader per gateway process for every open chat socket.

A socket used to hold a Redis connection of its own, blocked in ``XREAD`` on its
conversation's log: ten thousand idle shoppers were ten thousand connections.
Here one task reads the logs of all conversations that have a socket open on
this gateway with a single blocking ``XREAD`` over all of them, and hands each
entry to the sockets of its conversation. Idle sockets cost a queue in memory,
not a Redis connection.

A socket joins with the id it has seen (``after``): what came since is read once
with ``XRANGE`` and queued first, and from then on the reader's entries follow.
Each subscriber drops ids it already has, so the overlap between its backlog and
the reader's next batch is never sent twice, and nothing falls in a gap: the
backlog reads up to the log's end, and the reader starts a new conversation
from there. A new conversation wakes the blocked reader through a stream of
this process's own (``sb:gw:wake:<id>``), so it is read at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shopbot.store import LogEntry, key, parse_entry

log = logging.getLogger(__name__)

BLOCK_MS = 15_000
BATCH = 100
WAKE_TTL_S = 3600


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Subscription:
    """One socket's view of its conversation's log: ``await get()`` for the next entry."""

    def __init__(self, fanout: LogFanout, cid: str, seen: str):
        self.fanout, self.cid = fanout, cid
        self.seen = _id(seen)
        self.queue: asyncio.Queue[LogEntry | None] = asyncio.Queue()

    def offer(self, entry: LogEntry) -> None:
        if _id(entry.id) > self.seen:
            self.seen = _id(entry.id)
            self.queue.put_nowait(entry)

    async def get(self) -> LogEntry | None:
        """The next entry; None when the reader has stopped (the gateway is shutting down)."""
        return await self.queue.get()

    def close(self) -> None:
        self.fanout.unsubscribe(self)


class LogFanout:
    def __init__(self, r: aioredis.Redis, reader: aioredis.Redis | None = None):
        self.r = r  # subscribing: short commands on the shared pool
        self.reader = reader or r  # the blocking XREAD: a connection of its own, so the pool is never held
        self.subs: dict[str, set[Subscription]] = {}
        self.position: dict[str, str] = {}  # per conversation: the last id the reader has read
        self.wake_key = f"sb:gw:wake:{secrets.token_hex(6)}"
        self.wake_pos = "0-0"
        self.task: asyncio.Task | None = None
        self.closed = False

    async def subscribe(self, cid: str, after: str | None) -> Subscription:
        """Follow ``cid``'s log after ``after`` (None: from now on); closed at once once the gateway stops."""
        if self.closed:
            sub = Subscription(self, cid, after or "0-0")
            sub.queue.put_nowait(None)
            return sub
        log_key = key(cid, "log")
        if after is None:
            last = await self.r.xrevrange(log_key, count=1)
            backlog, start = [], last[0][0] if last else "0-0"
        else:
            backlog = await self.r.xrange(log_key, min=f"({after}", max="+")
            start = after
        sub = Subscription(self, cid, start)
        for entry_id, fields in backlog:
            sub.offer(parse_entry(entry_id, fields))
        end = backlog[-1][0] if backlog else start
        if self.closed:  # the gateway began stopping while we read: no reader to start again
            sub.queue.put_nowait(None)
            return sub
        self.subs.setdefault(cid, set()).add(sub)
        if cid not in self.position:
            self.position[cid] = end
            await self._wake()
        self._ensure_reader()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        group = self.subs.get(sub.cid)
        if group is None:
            return
        group.discard(sub)
        if not group:
            del self.subs[sub.cid]
            self.position.pop(sub.cid, None)  # read no more; the reader's next XREAD leaves it out

    async def _wake(self) -> None:
        if self.task is None or self.task.done():
            return
        async with self.r.pipeline(transaction=False) as p:
            p.xadd(self.wake_key, {"w": "1"}, maxlen=10, approximate=True)
            p.expire(self.wake_key, WAKE_TTL_S)
            await p.execute()

    def _ensure_reader(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._read(), name="log-fanout")

    async def _read(self) -> None:
        while self.subs:
            streams = {key(cid, "log"): pos for cid, pos in self.position.items()}
            streams[self.wake_key] = self.wake_pos
            try:
                got = await self.reader.xread(streams, block=BLOCK_MS, count=BATCH)
            except RedisError as exc:
                log.warning("reading the conversations' logs failed, again in 1 s: %s", type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for stream, entries in got or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                if name == self.wake_key:
                    self.wake_pos = entries[-1][0]
                    continue
                cid = name[len("sb:conv:{") : -len("}:log")]
                if cid not in self.position:
                    continue  # its last socket closed while we read
                for entry_id, fields in entries:
                    self.position[cid] = entry_id
                    entry = parse_entry(entry_id, fields)
                    for sub in list(self.subs.get(cid, ())):
                        sub.offer(entry)

    async def close(self) -> None:
        """Stop reading; every subscription gets None (its socket closes with 1001). Idempotent."""
        self.closed = True
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for group in self.subs.values():
            for sub in group:
                sub.queue.put_nowait(None)
        self.subs.clear()
        self.position.clear()
