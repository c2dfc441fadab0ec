"""Transcripts in SQL (SQLite by default, PostgreSQL by URL), for analytics and retraining.

Rows reach Redis (``sb:transcripts``) in the same transaction as the message
they describe; :func:`flush` moves them into SQL. A row has a unique
(conversation_id, message_id), so a flush repeated after a crash adds nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis
from redis.exceptions import LockError
from redis.lock import Lock
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import Engine

from .db import metadata
from .store import TRANSCRIPTS

messages = Table(
    "transcript_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(200), nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("channel", String(40), nullable=False),
    Column("sender", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("ts", Float, nullable=False),
    Column("language", String(8)),
    Column("intent", String(80)),
    Column("intent_confidence", Float),
    Column("sentiment", String(20)),
    Column("sentiment_score", Float),
    Column("agent", String(120)),
    # The shopper's id on the platform (meta "sender"): Telegram / Slack user id, web public id.
    Column("shopper", String(200)),
    # On a shopper's message: what the bot did with it (dialogue.engine.StepResult.action; a hand-off as
    # handoff:REASON). On an event row (sender "event", empty text): the event (outcome:KIND, helped:yes|no,
    # csat:N), with its detail (why it ended, the answer rated).
    Column("action", String(80)),
    Column("detail", String(120)),
    UniqueConstraint("conversation_id", "message_id", name="uq_transcript_message"),
    Index("ix_transcript_conversation_ts", "conversation_id", "ts"),
    Index("ix_transcript_channel_shopper", "channel", "shopper"),
    Index("ix_transcript_sender_ts", "sender", "ts"),
)
COLUMNS = [c.name for c in messages.columns if c.name != "id"]


def transcript_row(cid: str, meta: dict[str, str], message_id: str, sender: str, text: str, ts: float, **kw) -> dict:
    """One row of ``transcript_messages``, as queued in Redis by a commit."""
    return {
        "conversation_id": cid,
        "message_id": message_id,
        "channel": meta.get("channel", cid.split(":", 1)[0]),
        "shopper": meta.get("sender"),
        "sender": sender,
        "text": text,
        "ts": ts,
        **kw,
    }


def event_rows(
    cid: str,
    meta: dict[str, str],
    base_id: str,
    events: Sequence[tuple[str, str]],
    ts: float,
    language: str | None = None,
    agent: str | None = None,
) -> list[dict]:
    """Rows of ``transcript_messages`` for events (an episode's outcome, "did that help", a rating): sender
    ``event``, no text, ids ``BASE:eN`` (the same step gives the same ids, so a repeated flush adds nothing)."""
    return [
        transcript_row(
            cid,
            meta,
            f"{base_id}:e{i}",
            "event",
            "",
            ts,
            language=language,
            agent=agent,
            action=ev,
            detail=detail[:120],
        )  # fmt: skip
        for i, (ev, detail) in enumerate(events)
    ]


def _insert_ignoring_duplicates(engine: Engine, rows: list[dict[str, object]]) -> None:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    with engine.begin() as conn:
        conn.execute(insert(messages).on_conflict_do_nothing(index_elements=["conversation_id", "message_id"]), rows)


def flush(r: redis.Redis, engine: Engine, batch: int = 500, lock: Lock | None = None) -> int:
    """Move waiting rows from Redis into SQL; returns how many were moved.

    With ``lock`` (the caller holds it), its lease is renewed before each trim; if it was lost (the
    flush outlived it and someone else may be trimming), the flush stops there: the rows it wrote
    are in SQL and stay queued, and the next flush adds them nothing twice."""
    moved = 0
    while True:
        raw = r.lrange(TRANSCRIPTS, 0, batch - 1)
        if not raw:
            return moved
        rows = []
        for item in raw:
            row = json.loads(item)
            rows.append({c: row.get(c) for c in COLUMNS})
        _insert_ignoring_duplicates(engine, rows)
        if lock is not None:
            try:
                lock.reacquire()
            except LockError:
                return moved
        r.ltrim(TRANSCRIPTS, len(raw), -1)
        moved += len(raw)


def conversation(engine: Engine, conversation_id: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        q = select(messages).where(messages.c.conversation_id == conversation_id).order_by(messages.c.ts, messages.c.id)
        return [dict(row._mapping) for row in conn.execute(q)]
