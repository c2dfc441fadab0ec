"""Agents' corrections: a shopper message the bot misread, with the intent and sentiment an agent says it has.

An agent corrects a message from the agents' API or the Slack desk; both come here. The row keeps a copy
of the message's text and language and the model's reading (so the training export works after the
transcript is gone, and a forgotten shopper's corrections are deleted with the rest: ``admin.privacy``),
the labels, the agent (the token's name, or ``slack:<user id>`` from the verified Slack payload) and when.

One row per message (unique conversation and message id): a later correction replaces the labels it
gives and keeps the ones it leaves out; ``agent`` and ``created_at`` are the latest correction's. The
history (who said what, when) is the audit log's: every correction is audited with its labels.

``python -m nlu.feedback export`` reads this table with plain SQL (nlu imports nothing of the product).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text, UniqueConstraint, func, select
from sqlalchemy.engine import Engine

from .db import metadata
from .errors import Refused
from .store import ConversationStore
from .transcripts import messages

SENTIMENTS = ("negative", "neutral", "positive")
OUT_OF_SCOPE = "out_of_scope"  # an intent of the model that no policy answers
NOT_UNDERSTOOD = "not_understood"  # a shopper message's action when the bot did not understand it
HANDED_OFF = "handoff:not_understood"  # ... and when that handed the conversation off
MESSAGE_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a Redis stream id: shopper messages are log entries

corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(200), nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("channel", String(40), nullable=False),
    Column("shopper", String(200)),  # as in the transcript: found again by admin.privacy after it is gone
    Column("text", Text, nullable=False),
    Column("language", String(8)),
    Column("intent", String(80)),  # None: the agent did not correct the intent
    Column("sentiment", String(20)),  # None, negative, neutral, positive
    Column("model_intent", String(80)),
    Column("model_sentiment", String(20)),
    Column("agent", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("conversation_id", "message_id", name="uq_correction_message"),
    Index("ix_corrections_created_at", "created_at"),
)


class CorrectionError(Refused):
    """A correction that cannot be stored: bad labels (400), no such shopper message (404)."""


def check_labels(intent: object, sentiment: object, intents: frozenset[str]) -> tuple[str | None, str | None]:
    """The labels of a correction, or a ``CorrectionError`` saying what is wrong with them."""
    if intent is None and sentiment is None:
        raise CorrectionError("give an intent, a sentiment, or both")
    if intent is not None and (not isinstance(intent, str) or intent not in intents):
        shown = intent if isinstance(intent, str) else type(intent).__name__
        raise CorrectionError(f"unknown intent {str(shown)[:80]!r}; one of: {', '.join(sorted(intents))}")
    if sentiment is not None and sentiment not in SENTIMENTS:
        shown = sentiment if isinstance(sentiment, str) else type(sentiment).__name__
        raise CorrectionError(f"unknown sentiment {str(shown)[:80]!r}; one of: {', '.join(SENTIMENTS)}")
    return intent, sentiment  # type: ignore[return-value]


class CorrectionStore:
    """The ``corrections`` table, and the shopper messages it corrects (the SQL transcript, else Redis)."""

    def __init__(self, engine: Engine, store: ConversationStore, intents: frozenset[str]):
        self.engine, self.store = engine, store
        self.intents = frozenset(intents) | {OUT_OF_SCOPE}

    def shopper_message(self, cid: str, mid: str) -> dict[str, Any] | None:
        """A shopper's message with the model's reading: its transcript row, or its log entry and annotation
        while the transcript has not reached SQL. None: no such shopper message (or not one any more)."""
        if not MESSAGE_ID.match(mid) or max(int(p) for p in mid.split("-")) >= 2**64 or len(cid) > 200:
            return None  # not an id Redis would take
        with self.engine.connect() as conn:
            row = conn.execute(
                select(messages).where(
                    messages.c.conversation_id == cid, messages.c.message_id == mid, messages.c.sender == "shopper"
                )
            ).first()
        if row is not None:
            r = row._mapping
            return {
                "conversation_id": cid, "message_id": mid, "channel": r["channel"], "shopper": r["shopper"],
                "text": r["text"], "ts": r["ts"], "language": r["language"], "model_intent": r["intent"],
                "model_sentiment": r["sentiment"],
            }  # fmt: skip
        entry = self.store.message(cid, mid)
        if entry is None or entry.sender != "shopper":
            return None
        meta = self.store.meta(cid)
        ann = self.store.annotation(cid, mid) or {}
        return {
            "conversation_id": cid, "message_id": mid, "channel": meta.get("channel", cid.split(":", 1)[0]),
            "shopper": meta.get("sender"), "text": entry.text, "ts": entry.ts, "language": ann.get("language"),
            "model_intent": ann.get("intent"), "model_sentiment": ann.get("sentiment"),
        }  # fmt: skip

    def correct(self, cid: str, mid: str, agent: str, intent: object = None, sentiment: object = None) -> dict:
        """Store an agent's reading of one shopper message; returns the correction as stored."""
        intent, sentiment = check_labels(intent, sentiment, self.intents)
        found = self.shopper_message(cid, mid)
        if found is None:
            raise CorrectionError(f"conversation {cid[:200]!r} has no shopper message {mid[:80]!r}", 404)
        row = {k: found[k] for k in ("conversation_id", "message_id", "channel", "shopper", "text", "language")}
        row |= {
            "model_intent": found["model_intent"], "model_sentiment": found["model_sentiment"], "intent": intent,
            "sentiment": sentiment, "agent": agent[:200], "created_at": time.time(),
        }  # fmt: skip
        insert = _insert(self.engine)
        stmt = insert(corrections).values(**row)
        new = stmt.excluded
        # A later correction replaces what it gives and keeps what it leaves out.
        stmt = stmt.on_conflict_do_update(
            index_elements=["conversation_id", "message_id"],
            set_={
                "intent": func.coalesce(new.intent, corrections.c.intent),
                "sentiment": func.coalesce(new.sentiment, corrections.c.sentiment),
                "agent": new.agent,
                "created_at": new.created_at,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
        stored = self.get(cid, mid)
        assert stored is not None
        return stored

    def get(self, cid: str, mid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(corrections).where(corrections.c.conversation_id == cid, corrections.c.message_id == mid)
            ).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out.pop("id")
        return out

    def of_conversation(self, cid: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = select(corrections).where(corrections.c.conversation_id == cid).order_by(corrections.c.id)
            return [{k: v for k, v in r._mapping.items() if k != "id"} for r in conn.execute(q)]

    def for_labelling(self, limit: int = 50) -> list[dict[str, Any]]:
        """Shopper messages of hand-offs where the bot did not understand, not corrected yet, newest first:
        the message that handed off (action ``handoff:not_understood``) and the run of ``not_understood``
        messages of that conversation just before it. From the SQL transcript (there within seconds)."""
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        offset, page = 0, 200
        with self.engine.connect() as conn:
            while True:
                handoffs = conn.execute(
                    select(messages.c.conversation_id, messages.c.ts)
                    .where(messages.c.sender == "shopper", messages.c.action == HANDED_OFF)
                    .order_by(messages.c.ts.desc(), messages.c.id.desc())
                    .limit(page)
                    .offset(offset)
                ).all()
                if not handoffs:
                    break
                offset += page
                cids = sorted({h.conversation_id for h in handoffs})
                rows = conn.execute(
                    select(messages)
                    .where(messages.c.conversation_id.in_(cids), messages.c.sender == "shopper")
                    .order_by(messages.c.conversation_id, messages.c.ts, messages.c.id)
                ).all()
                done = {
                    (c.conversation_id, c.message_id)
                    for c in conn.execute(
                        select(corrections.c.conversation_id, corrections.c.message_id).where(
                            corrections.c.conversation_id.in_(cids)
                        )
                    )
                }
                by_cid: dict[str, list[Any]] = {}
                for r in rows:
                    by_cid.setdefault(r.conversation_id, []).append(r._mapping)
                found = []
                for mine in by_cid.values():
                    for i, r in enumerate(mine):
                        if r["action"] != HANDED_OFF:
                            continue
                        j = i
                        while j >= 0 and (j == i or mine[j]["action"] == NOT_UNDERSTOOD):
                            found.append(mine[j])
                            j -= 1
                for r in found:
                    k = (r["conversation_id"], r["message_id"])
                    if k not in done and k not in seen:
                        seen.add(k)
                        out.append(_reading(r))
                out.sort(key=lambda m: m["ts"], reverse=True)
                # What later pages hold is older than their hand-offs, so older than this page's last one.
                if len(handoffs) < page or (len(out) >= limit and out[limit - 1]["ts"] >= handoffs[-1].ts):
                    break
        return out[:limit]


def _reading(r: Any) -> dict[str, Any]:
    return {
        "conversation_id": r["conversation_id"], "message_id": r["message_id"], "channel": r["channel"],
        "text": r["text"], "ts": r["ts"], "language": r["language"], "action": r["action"],
        "intent": r["intent"], "intent_confidence": r["intent_confidence"], "sentiment": r["sentiment"],
        "sentiment_score": r["sentiment_score"],
    }  # fmt: skip


def _insert(engine: Engine):
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
