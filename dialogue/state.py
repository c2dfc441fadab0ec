"""The state of one conversation, as stored in Redis (JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

Status = Literal["bot", "queued", "agent", "closed"]
HISTORY = 10


@dataclass
class ConversationState:
    status: Status = "bot"
    locale: str = "en"
    slots: dict[str, str] = field(default_factory=dict)
    awaiting: dict[str, str] | None = None  # {"intent": ..., "slot": ...} while the bot waits for a detail
    last_intents: list[str] = field(default_factory=list)
    sentiment_scores: list[float] = field(default_factory=list)
    turns: int = 0
    misunderstood: int = 0
    angry: int = 0
    mood_boost: int = 0  # 1 once the shopper's mood fell: their hand-off goes one place higher
    agent: str | None = None
    handoff_reason: str | None = None
    priority: int = 0
    queued_at: float | None = None
    busy_notice_at: float | None = None  # when the shopper was told that no agent is free yet
    queued_acked: bool = False  # a message sent while waiting for a person was acknowledged once
    order_turn: int = 0  # the turn the current order (slots["order_number"]) was last given or shown
    apologized: bool = False  # the bot apologised for the shopper's current grievance
    # The current episode: from the first message after the last outcome to the next outcome (resolved by the
    # bot, by an agent, handed off, abandoned: dialogue.engine.close_episode).
    opened_at: float | None = None
    answered: str | None = None  # the last answer from the shop's data this episode (faq:ID, order:INTENT, products)
    helped_asked: bool = False  # "Did that help?" was asked this episode (once)
    helped_pending: bool = False  # ... and its buttons are the last thing the bot said
    csat_pending: bool = False  # an agent resolved the conversation and asked for a 1-5 rating
    last_action: str | None = None  # what the bot did last (dialogue.engine.StepResult.action)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object] | None) -> ConversationState:
        if not d:
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})  # type: ignore[arg-type]

    def remember(self, intent: str | None, score: float | None) -> None:
        if intent:
            self.last_intents = (self.last_intents + [intent])[-HISTORY:]
        if score is not None:
            self.sentiment_scores = (self.sentiment_scores + [round(score, 3)])[-HISTORY:]
