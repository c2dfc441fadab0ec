"""The conversation store in Redis: message log, inbox, annotations, state, locks.

Every conversation has (keys share the ``{cid}`` hash tag, so one Redis Cluster
slot holds them):

- ``log``: a Redis stream of every message, shopper's and ours. Its entry ids are
  the message ids the web channel hands out; ``after=ID`` reads are XRANGE.
- ``inbox``: shopper message ids not yet handled by the dialogue, oldest first.
  A message leaves the inbox in the same transaction that writes the bot's
  replies, so a worker killed half-way leaves it there to be done again.
- ``ann``: NLU annotations by message id.
- ``state``: the dialogue state (JSON).
- ``dedup``: client/platform message id -> log id, so retries collapse.
- ``meta``: channel, account, chat, sender, created/last seen.

Global keys: ``pending`` (conversations with a non-empty inbox, by oldest
arrival, for the sweeper), ``handoff:queue``, ``transcripts`` (rows waiting for
the SQL writer), ``workers`` (heartbeats).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from . import metrics

PREFIX = "sb"
PENDING = f"{PREFIX}:pending"
HANDOFF_QUEUE = f"{PREFIX}:handoff:queue"
TRANSCRIPTS = f"{PREFIX}:transcripts"
# Held by whoever reads-then-trims or edits the TRANSCRIPTS list (the flusher, forgetting a shopper).
TRANSCRIPTS_LOCK = f"{PREFIX}:transcripts:lock"
# The flusher's hold on it is a short lease, renewed before each trim: a worker killed mid-flush holds
# the transcripts up for this long at most (a lost renewal stops the flush before it trims anything).
TRANSCRIPTS_LOCK_S = 10
# Conversations with an open episode, by when it ends if nothing more happens (dialogue.engine.close_episode).
CLOSING = f"{PREFIX}:closing"
WORKERS = f"{PREFIX}:workers"
WORKER_QUEUES = f"{PREFIX}:workers:queues"
# A conversation's lock is a short lease, renewed every third of it while its holder works: a worker
# that dies holding it (SIGKILL, a lost machine) frees the conversation within LOCK_LEASE_MS, and the
# stall sweep hands it to another worker (issue: recovery times).
LOCK_LEASE_MS = 5_000


def key(cid: str, part: str) -> str:
    return f"{PREFIX}:conv:{{{cid}}}:{part}"


# Record a shopper message once: dedup, log, inbox, pending, meta, TTLs, atomically.
_RECORD = """
local cmid = ARGV[1]
if cmid ~= '' then
  local seen = redis.call('HGET', KEYS[3], cmid)
  if seen then return {seen, 1} end
end
local mid = redis.call('XADD', KEYS[1], '*', 'from', 'shopper', 'text', ARGV[2], 'ts', ARGV[3], 'cmid', cmid)
if cmid ~= '' then redis.call('HSET', KEYS[3], cmid, mid) end
redis.call('RPUSH', KEYS[2], mid)
redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[4])
for i = 6, #ARGV, 2 do redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[4], 'last_seen', ARGV[3])
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return {mid, 0}
"""

# A reply the gateway gives by itself (a greeting, "text only"), once per platform
# update: the dedup hash maps the update's key to the reply's id.
_RECORD_REPLY = """
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen then return {seen, 1} end
local n_meta = tonumber(ARGV[3])
local fields = {}
for i = 4 + 2 * n_meta, #ARGV do fields[#fields + 1] = ARGV[i] end
local mid = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('HSET', KEYS[2], ARGV[1], mid)
for i = 4, 3 + 2 * n_meta, 2 do redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return {mid, 0}
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# After a step: the conversation leaves the pending set when its inbox is empty;
# otherwise its clock restarts (the sweeper looks for conversations that made no
# progress for a while, not for ones that merely have a long history of messages).
_CLEAR_PENDING = """
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
end
return 1
"""


# Keep a conversation's log to its newest ARGV[1] entries, once it has ARGV[2] more than that
# (so the trim is paid for once per ARGV[2] messages). Never past what is not done with yet:
# the oldest message still in the inbox, what the shopper's platform (ARGV[3] == '1': Telegram,
# Slack) and the agents' thread (while its card is queued or taken, handoff.slack_desk) have not
# been sent. Annotations and dedup entries of the trimmed messages go with them.
_TRIM = """
local cap, step = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('XLEN', KEYS[1]) <= cap + step then return 0 end
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then return am < bm end
  return as < bs
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', cap)
local floor = newest[#newest][1]
local head = redis.call('LINDEX', KEYS[2], 0)
if head and older(head, floor) then floor = head end
if ARGV[3] == '1' then
  local sent = redis.call('HGET', KEYS[3], 'shopper')
  if not sent then return 0 end
  if older(sent, floor) then floor = sent end
end
local desk = redis.call('HMGET', KEYS[4], 'cursor', 'shown')
local mirroring = desk[2] and (string.sub(desk[2], 1, 7) == 'queued|' or string.sub(desk[2], 1, 6) == 'agent|')
if desk[1] and mirroring then
  if not string.match(desk[1], '^%d+%-%d+$') then return 0 end
  if older(desk[1], floor) then floor = desk[1] end
end
local gone = redis.call('XRANGE', KEYS[1], '-', '(' .. floor)
for _, entry in ipairs(gone) do
  redis.call('HDEL', KEYS[5], entry[1])
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == 'cmid' and f[i + 1] ~= '' then redis.call('HDEL', KEYS[6], f[i + 1]) end
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
"""


class LockLost(RuntimeError):
    """The conversation lock expired or was taken over before the commit."""


@dataclass(frozen=True)
class LogEntry:
    id: str
    sender: str  # shopper | bot | agent | system
    text: str
    ts: float
    quick_replies: tuple[str, ...] = ()
    client_message_id: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": "message",
            "id": self.id,
            "from": self.sender,
            "text": self.text,
            "ts": self.ts,
        }
        if self.quick_replies:
            out["quick_replies"] = list(self.quick_replies)
        if self.client_message_id:
            out["client_message_id"] = self.client_message_id
        return out


def parse_entry(entry_id: str | bytes, fields: dict) -> LogEntry:
    f = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    qr = tuple(json.loads(f["qr"])) if f.get("qr") else ()
    return LogEntry(eid, f.get("from", "system"), f.get("text", ""), float(f.get("ts", 0)), qr, f.get("cmid", ""))


@dataclass(frozen=True)
class Outgoing:
    """A message we add to a conversation's log (bot, agent or system)."""

    sender: str
    text: str
    quick_replies: tuple[str, ...] = ()

    def fields(self, now: float) -> dict[str, str]:
        f = {"from": self.sender, "text": self.text, "ts": f"{now:.3f}"}
        if self.quick_replies:
            f["qr"] = json.dumps(list(self.quick_replies), ensure_ascii=False)
        return f


class ConversationStore:
    """Synchronous access for workers; the gateway calls it through a thread."""

    def __init__(
        self, client: redis.Redis, ttl_s: int = 30 * 24 * 3600, empty_ttl_s: int = 24 * 3600, log_cap: int = 2000
    ):
        self.r = client
        self.ttl_s = ttl_s
        # A session nobody wrote in (opened widgets, or someone making sessions in bulk) does not stay
        # for the full TTL: its first message (the record scripts' EXPIRE) gives it that.
        self.empty_ttl_s = min(empty_ttl_s, ttl_s)
        # A conversation's log keeps its newest ``log_cap`` messages (and everything not yet handled or sent).
        self.log_cap = log_cap
        self._record = client.register_script(_RECORD)
        self._record_reply = client.register_script(_RECORD_REPLY)
        self._unlock = client.register_script(_UNLOCK)
        self._renew = client.register_script(_RENEW)
        self._clear_pending = client.register_script(_CLEAR_PENDING)
        self._trim = client.register_script(_TRIM)

    @classmethod
    def from_url(
        cls, url: str, ttl_s: int = 30 * 24 * 3600, empty_ttl_s: int = 24 * 3600, log_cap: int = 2000
    ) -> ConversationStore:
        client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        return cls(client, ttl_s, empty_ttl_s, log_cap)

    @classmethod
    def bounded(cls, s, max_connections: int) -> ConversationStore:
        """The store with at most ``max_connections`` Redis connections; callers wait for a free one (a
        gateway: its load must not turn into connections)."""
        pool = redis.BlockingConnectionPool.from_url(
            s.redis_url, max_connections=max_connections, timeout=10, decode_responses=True, health_check_interval=30
        )
        return cls(redis.Redis(connection_pool=pool), s.conversation_ttl_s, s.empty_session_ttl_s, s.log_max_messages)

    @classmethod
    def from_settings(cls, s) -> ConversationStore:
        """The store as the settings (``shopbot.settings.Settings``) describe it."""
        return cls.from_url(s.redis_url, s.conversation_ttl_s, s.empty_session_ttl_s, s.log_max_messages)

    # -- shopper messages ---------------------------------------------------------------

    def record_inbound(
        self, cid: str, text: str, client_message_id: str = "", meta: dict[str, str] | None = None
    ) -> tuple[str, bool]:
        """Log a shopper message and put it in the inbox; returns (message id, was a duplicate)."""
        now = time.time()
        argv: list[str] = [client_message_id, text, f"{now:.3f}", cid, str(self.ttl_s)]
        for k, v in (meta or {}).items():
            argv += [k, v]
        argv += ["created", f"{now:.3f}"]
        keys = [key(cid, "log"), key(cid, "inbox"), key(cid, "dedup"), key(cid, "meta"), PENDING]
        mid, dup = self._record(keys=keys, args=argv)
        if not int(dup):
            self.trim(cid)
        return mid, bool(int(dup))

    def record_reply(self, cid: str, dedup_key: str, msg: Outgoing, meta: dict[str, str]) -> tuple[str, bool]:
        """Log a reply that needs no dialogue step, once per ``dedup_key``; returns (id, was a duplicate)."""
        now = time.time()
        pairs = [x for kv in {**meta, "created": f"{now:.3f}"}.items() for x in kv]
        fields = [x for kv in msg.fields(now).items() for x in kv]
        argv = [dedup_key, str(self.ttl_s), str(len(pairs) // 2), *pairs, *fields]
        mid, dup = self._record_reply(keys=[key(cid, "log"), key(cid, "dedup"), key(cid, "meta")], args=argv)
        if not int(dup):
            metrics.count_committed(cid, [msg])
            self.trim(cid)
        return mid, bool(int(dup))

    def trim(self, cid: str) -> int:
        """Cap the conversation's log (see ``_TRIM``); returns how many messages left it."""
        push = "1" if cid.split(":", 1)[0] in ("telegram", "slack") else "0"
        keys = [key(cid, p) for p in ("log", "inbox", "out", "desk", "ann", "dedup")]
        return int(self._trim(keys=keys, args=[self.log_cap, max(self.log_cap // 10, 1), push]))

    def add_transcript_rows(self, rows: Sequence[dict[str, object]]) -> None:
        """Rows for the SQL transcript that belong to no dialogue step (internal notes)."""
        if rows:
            self.r.rpush(TRANSCRIPTS, *[json.dumps(r, ensure_ascii=False) for r in rows])

    def first_time(self, name: str, ttl_s: int) -> bool:
        """True the first time ``name`` is seen within ``ttl_s`` (replay and retry protection)."""
        return bool(self.r.set(f"{PREFIX}:seen:{name}", "1", nx=True, ex=ttl_s))

    def forget_seen(self, name: str) -> None:
        """``first_time`` forgets ``name`` (what was marked seen was not handled after all)."""
        self.r.delete(f"{PREFIX}:seen:{name}")

    # -- what was sent where: cursors into the log, the agents' desk --------------------------

    def cursor(self, cid: str, name: str) -> str | None:
        """The last log id handed to a sink (``shopper``: the shopper's platform, ``desk``: the agents' thread)."""
        return self.r.hget(key(cid, "out"), name)

    def set_cursor(self, cid: str, name: str, mid: str) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.hset(key(cid, "out"), name, mid)
            p.expire(key(cid, "out"), self.ttl_s)
            p.execute()

    def desk_card(self, cid: str) -> dict[str, str]:
        return self.r.hgetall(key(cid, "desk"))

    def save_desk_card(self, cid: str, fields: dict[str, str]) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.hset(key(cid, "desk"), mapping=fields)
            p.expire(key(cid, "desk"), self.ttl_s)
            if "ts" in fields:
                p.set(f"{PREFIX}:desk:thread:{fields['ts']}", cid, ex=self.ttl_s)
            p.execute()

    def conversation_of_thread(self, thread_ts: str) -> str | None:
        """The conversation whose hand-off card started this Slack thread."""
        return self.r.get(f"{PREFIX}:desk:thread:{thread_ts}")

    def exists(self, cid: str) -> bool:
        return bool(self.r.exists(key(cid, "meta")))

    def create(self, cid: str, meta: dict[str, str]) -> None:
        k = key(cid, "meta")
        with self.r.pipeline() as p:
            for name, value in {**meta, "created": f"{time.time():.3f}"}.items():
                p.hsetnx(k, name, value)
            p.expire(k, self.empty_ttl_s, nx=True)  # never shortens a conversation that is under way
            p.execute()

    def meta(self, cid: str) -> dict[str, str]:
        return self.r.hgetall(key(cid, "meta"))

    def messages_after(self, cid: str, after: str | None = None, count: int = 500) -> list[LogEntry]:
        start = f"({after}" if after and after != "0" else "-"
        return [parse_entry(i, f) for i, f in self.r.xrange(key(cid, "log"), start, "+", count=count)]

    def message(self, cid: str, mid: str) -> LogEntry | None:
        got = self.r.xrange(key(cid, "log"), mid, mid)
        return parse_entry(*got[0]) if got else None

    def inbox(self, cid: str) -> list[str]:
        return self.r.lrange(key(cid, "inbox"), 0, -1)

    def inbox_head(self, cid: str) -> str | None:
        """The oldest message the dialogue has not handled yet."""
        return self.r.lindex(key(cid, "inbox"), 0)

    # -- annotations ----------------------------------------------------------------------

    def save_annotations(self, items: Sequence[tuple[str, str, dict[str, object]]]) -> None:
        with self.r.pipeline(transaction=False) as p:
            for cid, mid, ann in items:
                p.hset(key(cid, "ann"), mid, json.dumps(ann, ensure_ascii=False))
                p.expire(key(cid, "ann"), self.ttl_s)
            p.execute()

    def texts_to_annotate(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(cid, mid, text) for the messages among ``pairs`` not annotated yet, in one round trip."""
        pairs = list(dict.fromkeys(pairs))
        with self.r.pipeline(transaction=False) as p:
            for cid, mid in pairs:
                p.hexists(key(cid, "ann"), mid)
                p.xrange(key(cid, "log"), mid, mid)
            replies = p.execute()
        out = []
        for (cid, mid), done, entry in zip(pairs, replies[::2], replies[1::2], strict=True):
            if not done and entry:  # done: a redelivered request; no entry: expired from the log
                out.append((cid, mid, parse_entry(*entry[0]).text))
        return out

    def annotation(self, cid: str, mid: str) -> dict[str, object] | None:
        raw = self.r.hget(key(cid, "ann"), mid)
        return json.loads(raw) if raw else None

    # -- state and the per-conversation lock ---------------------------------------------

    def state(self, cid: str) -> dict[str, object] | None:
        raw = self.r.get(key(cid, "state"))
        return json.loads(raw) if raw else None

    @contextmanager
    def lock(self, cid: str, wait_s: float = 0.0, lease_ms: int = LOCK_LEASE_MS) -> Iterator[str | None]:
        """Hold the conversation's lock; yields the token, or None when it is busy after ``wait_s``.

        The lock is a lease of ``lease_ms``, renewed by a thread every third of it while held: a holder
        that dies lets go within the lease. A renewal that finds the lock gone stops; the holder's
        commit then refuses (``LockLost``), so nothing is written twice."""
        token = secrets.token_hex(8)
        k = key(cid, "lock")
        deadline = time.monotonic() + wait_s
        while not self.r.set(k, token, nx=True, px=lease_ms):
            if time.monotonic() >= deadline:
                yield None
                return
            time.sleep(0.01)
        stop = threading.Event()
        renewer = threading.Thread(target=self._keep, args=(k, token, lease_ms, stop), name="lock-lease", daemon=True)
        renewer.start()
        try:
            yield token
        finally:
            stop.set()
            renewer.join()
            self._unlock(keys=[k], args=[token])

    def _keep(self, k: str, token: str, lease_ms: int, stop: threading.Event) -> None:
        while not stop.wait(lease_ms / 3000):
            try:
                if not self._renew(keys=[k], args=[token, lease_ms]):
                    return  # lost (expired, or taken over): the commit will say so
            except redis.RedisError:
                continue  # Redis away for a moment: try again; the lease may lapse, the commit checks

    def commit(
        self,
        cid: str,
        token: str,
        state: dict[str, object],
        outgoing: Sequence[Outgoing] = (),
        consume: str | None = None,
        transcript: Sequence[dict[str, object]] = (),
        queue_score: float | None = None,
        dequeue: bool = False,
        close_at: float | None = None,
    ) -> None:
        """Write one dialogue step atomically: state, messages, inbox pop, transcript rows, queue.

        ``close_at``: when the conversation's episode ends if nothing more happens (0: it has ended, or
        none is open; None: unchanged).

        Refuses (``LockLost``) unless this token still holds the lock and, when
        ``consume`` is given, that message is still at the head of the inbox, so a
        step done twice (a redelivered task) writes nothing the second time.
        """
        lock_k, inbox_k, log_k = key(cid, "lock"), key(cid, "inbox"), key(cid, "log")
        now = time.time()
        with self.r.pipeline() as p:
            p.watch(lock_k, inbox_k)
            if p.get(lock_k) != token:
                raise LockLost(cid)
            if consume is not None and p.lindex(inbox_k, 0) != consume:
                raise LockLost(f"{cid}: {consume} is no longer at the head of the inbox")
            p.multi()
            p.set(key(cid, "state"), json.dumps(state, ensure_ascii=False), ex=self.ttl_s)
            for msg in outgoing:
                p.xadd(log_k, msg.fields(now))
            p.expire(log_k, self.ttl_s)
            if consume is not None:
                p.lpop(inbox_k)
            for row in transcript:
                p.rpush(TRANSCRIPTS, json.dumps(row, ensure_ascii=False))
            if queue_score is not None:
                p.zadd(HANDOFF_QUEUE, {cid: queue_score})
            if dequeue:
                p.zrem(HANDOFF_QUEUE, cid)
            if close_at:
                p.zadd(CLOSING, {cid: close_at})
            elif close_at is not None:
                p.zrem(CLOSING, cid)
            p.execute()
        metrics.count_committed(cid, outgoing, transcript)
        self._clear_pending(keys=[inbox_k, PENDING], args=[cid, time.time()])
        if outgoing:
            self.trim(cid)

    # -- sweeping and liveness ------------------------------------------------------------

    def stalled(self, older_than_s: float, limit: int = 200) -> list[str]:
        """Conversations with unhandled messages and no progress for ``older_than_s``.

        The clock starts when the first unhandled message arrives and restarts at every step.
        """
        return self.r.zrangebyscore(PENDING, "-inf", time.time() - older_than_s, start=0, num=limit)

    def closing(self, now: float, limit: int = 200) -> list[str]:
        """Conversations whose episode is due to end by silence (``close_at`` of their last commit passed)."""
        return self.r.zrangebyscore(CLOSING, "-inf", now, start=0, num=limit)

    def close_due(self, cid: str) -> float | None:
        """When ``cid``'s episode is due to end by silence (None: none is open)."""
        return self.r.zscore(CLOSING, cid)

    def schedule_close(self, cid: str, at: float) -> None:
        """Move the end of ``cid``'s episode to ``at`` (0: none is open). Call it holding the lock."""
        if at:
            self.r.zadd(CLOSING, {cid: at})
        else:
            self.r.zrem(CLOSING, cid)

    def touch_pending(self, cid: str) -> None:
        """Restart a stalled conversation's clock so it is not re-queued again at once."""
        self._clear_pending(keys=[key(cid, "inbox"), PENDING], args=[cid, time.time()])

    def heartbeat(self, worker: str, queues: list[str]) -> None:
        """Say that ``worker`` is alive and serves ``queues``."""
        now = time.time()
        with self.r.pipeline(transaction=False) as p:
            p.zadd(WORKERS, {worker: now})
            p.hset(WORKER_QUEUES, worker, ",".join(queues))
            p.zremrangebyscore(WORKERS, "-inf", now - 3600)
            p.execute()

    def live_workers(self, within_s: float = 15.0) -> dict[str, list[str]]:
        """Workers with a heartbeat in the last ``within_s`` seconds, with the queues each serves."""
        names = self.r.zrangebyscore(WORKERS, time.time() - within_s, "+inf")
        queues = self.r.hmget(WORKER_QUEUES, names) if names else []
        return {n: (q or "").split(",") if q else [] for n, q in zip(names, queues, strict=True)}

    # -- the human queue ------------------------------------------------------------------

    def queue(self) -> list[tuple[str, float]]:
        return self.r.zrange(HANDOFF_QUEUE, 0, -1, withscores=True)

    def drop_expired_from_queue(self, cid: str) -> bool:
        """Take a conversation out of the human queue if its state expired while it waited; True if so."""
        if self.r.exists(key(cid, "state")):
            return False
        return bool(self.r.zrem(HANDOFF_QUEUE, cid))
