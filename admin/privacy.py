"""A shopper's data: masked exports, and deleting everything we hold about one shopper on request.

What the product holds about a shopper, per conversation: the Redis keys
(message log, inbox, annotations, state, dedup ids, delivery cursors, the
agents' desk card), its place in the human queue and the pending set,
transcript rows not yet moved to SQL, the SQL transcript, and the agents'
corrections of their messages (``shopbot.corrections``). ``forget`` removes
all of it, holding the conversation's lock so no worker writes it back. Orders
are the shop's records, not ours: they are left to the shop's own process.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from shopbot.corrections import corrections
from shopbot.errors import Refused
from shopbot.pii import mask
from shopbot.store import CLOSING, HANDOFF_QUEUE, PENDING, PREFIX, TRANSCRIPTS, TRANSCRIPTS_LOCK, ConversationStore, key
from shopbot.transcripts import messages

CHANNELS = ("web", "telegram", "slack")
USER_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")


class PrivacyError(Refused):
    """A shopper-data request that cannot be served."""


def _like_escape(text: str) -> str:
    return re.sub(r"([%_\\])", r"\\\1", text)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def conversations_of(store: ConversationStore, engine: Engine, channel: str, *users: str) -> list[str]:
    """Every conversation of one shopper, known on ``channel`` by any of ``users``: their
    Telegram or Slack user id, or a web session's ids (``channels.web.shopper_ids``)."""
    if channel not in CHANNELS:
        raise PrivacyError(f"channel must be one of {', '.join(CHANNELS)}")
    if not users or not all(USER_RE.match(u) for u in users):
        raise PrivacyError("user must be the platform's user id (or the web session id)")
    found: set[str] = set()
    pattern = f"{PREFIX}:conv:{{{_glob_escape(channel)}:*}}:meta"
    for k in store.r.scan_iter(match=pattern, count=1000):
        meta = store.r.hgetall(k)
        if {meta.get("sender"), meta.get("chat")} & set(users):
            found.add(k[len(f"{PREFIX}:conv:{{") : -len("}:meta")])
    # Conversations gone from Redis (expired) may still be in SQL: rows name their shopper; rows
    # written before they did are found by the conversation id, where private chats name the user.
    with engine.connect() as conn:
        mine = (messages.c.channel == channel) & messages.c.shopper.in_(users)
        found.update(r[0] for r in conn.execute(select(messages.c.conversation_id).where(mine).distinct()))
        # Corrections keep their shopper too: found after the transcript is gone.
        fixed = (corrections.c.channel == channel) & corrections.c.shopper.in_(users)
        found.update(r[0] for r in conn.execute(select(corrections.c.conversation_id).where(fixed).distinct()))
        for user in users:
            # The user id's own "_" (and "%") must not act as LIKE wildcards matching other shoppers.
            pattern = f"{channel}:%:{_like_escape(user)}"
            like = messages.c.conversation_id.like(pattern, escape="\\")
            found.update(r[0] for r in conn.execute(select(messages.c.conversation_id).where(like).distinct()))
            like = corrections.c.conversation_id.like(pattern, escape="\\")
            found.update(r[0] for r in conn.execute(select(corrections.c.conversation_id).where(like).distinct()))
    return sorted(found)


def forget(store: ConversationStore, engine: Engine, cids: list[str], lock_wait_s: float = 30.0) -> dict[str, int]:
    """Delete the conversations ``cids`` everywhere; returns what was removed."""
    counts = {"conversations": 0, "redis_keys": 0, "transcript_rows": 0, "queued_rows": 0, "corrections": 0}
    r = store.r
    for cid in cids:
        with store.lock(cid, wait_s=10) as token:
            if token is None:
                raise PrivacyError(f"{cid} is busy (a worker holds it); try again", 409)
            card = store.desk_card(cid)
            ks = [k for k in r.scan_iter(match=f"{PREFIX}:conv:{{{_glob_escape(cid)}}}:*", count=1000)]
            ks = [k for k in ks if k != key(cid, "lock")]
            if card.get("ts"):
                ks.append(f"{PREFIX}:desk:thread:{card['ts']}")
            with r.pipeline() as p:
                if ks:
                    p.delete(*ks)
                p.zrem(HANDOFF_QUEUE, cid)
                p.zrem(PENDING, cid)
                p.zrem(CLOSING, cid)
                p.execute()
            counts["redis_keys"] += len(ks)
            counts["conversations"] += 1
    # The flusher reads a batch, writes it to SQL, then trims the batch off the list: between its
    # read and its trim, removing rows would make the trim drop other conversations' rows, and
    # the forgotten rows would reach SQL after their delete. Both hold the same lock.
    lock = r.lock(TRANSCRIPTS_LOCK, timeout=60, blocking_timeout=lock_wait_s)
    if not lock.acquire():
        raise PrivacyError("the transcript flusher is busy; try again", 409)
    try:
        wanted = set(cids)
        for raw in r.lrange(TRANSCRIPTS, 0, -1):
            if json.loads(raw).get("conversation_id") in wanted:
                counts["queued_rows"] += r.lrem(TRANSCRIPTS, 0, raw)
        if cids:
            with engine.begin() as conn:
                counts["transcript_rows"] = conn.execute(
                    delete(messages).where(messages.c.conversation_id.in_(cids))
                ).rowcount
                counts["corrections"] = conn.execute(
                    delete(corrections).where(corrections.c.conversation_id.in_(cids))
                ).rowcount
    finally:
        lock.release()
    return counts


def export(store: ConversationStore, engine: Engine, cid: str) -> dict[str, Any]:
    """A conversation's transcript with personal data masked: the SQL rows, then what is only in Redis yet."""
    with engine.connect() as conn:
        q = select(messages).where(messages.c.conversation_id == cid).order_by(messages.c.ts, messages.c.id)
        rows = [dict(r._mapping) for r in conn.execute(q)]
        q = select(corrections).where(corrections.c.conversation_id == cid).order_by(corrections.c.created_at)
        fixed = [dict(r._mapping) for r in conn.execute(q)]
    seen = {r["message_id"] for r in rows}
    for e in store.messages_after(cid, None, count=5000):
        if e.id not in seen:
            rows.append({"conversation_id": cid, "message_id": e.id, "sender": e.sender, "text": e.text, "ts": e.ts})
    if not rows and not fixed:
        raise PrivacyError(f"no conversation {cid!r}", 404)
    out = []
    for r in sorted(rows, key=lambda r: r["ts"]):
        r.pop("id", None)
        r["text"] = mask(r["text"])
        if r.get("agent"):
            r["agent"] = mask(r["agent"])
        out.append(r)
    for c in fixed:  # the agents' readings of their messages, with the text they were given
        c.pop("id", None)
        c["text"], c["agent"] = mask(c["text"]), mask(c["agent"])
    return {"conversation_id": cid, "messages": out, "corrections": fixed, "masked": True}
