"""One dialogue step: a shopper message and its NLU annotation in, replies and state out.

Pure: no I/O. The worker loads the state, calls :func:`step`, and commits the
result to Redis in one transaction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .policy import Policy
from .state import ConversationState


@dataclass(frozen=True)
class Annotation:
    language: str
    intent: str
    intent_confidence: float
    sentiment: str
    sentiment_score: float

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Annotation:
        return cls(
            language=str(d["language"]),
            intent=str(d["intent"]),
            intent_confidence=float(d["intent_confidence"]),  # type: ignore[arg-type]
            sentiment=str(d["sentiment"]),
            sentiment_score=float(d["sentiment_score"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Reply:
    text: str
    sender: str = "bot"  # bot | system
    quick_replies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Handoff:
    reason: str  # requested | angry | not_understood
    priority: int


@dataclass(frozen=True)
class StepResult:
    state: ConversationState
    replies: tuple[Reply, ...] = ()
    handoff: Handoff | None = None


def extract_slot(policy: Policy, slot: str, text: str) -> str | None:
    pattern = policy.slot_patterns.get(slot)
    m = pattern.search(text) if pattern else None
    return (m.group(1) if m.groups() else m.group(0)).upper() if m else None


def _answer(policy: Policy, s: ConversationState, intent: str) -> StepResult:
    ip = policy.intents[intent]
    lang = s.locale
    qr = ip.quick_replies.get(lang, ())
    return StepResult(s, (Reply(ip.texts[lang].format(**s.slots), quick_replies=qr),))


def _hand_off(policy: Policy, s: ConversationState, reason: str, now: float) -> StepResult:
    s.status = "queued"
    s.handoff_reason = reason
    s.priority = policy.priority[reason]
    s.queued_at = now
    s.awaiting = None
    notice = policy.message("handoff_angry" if reason == "angry" else "handoff", s.locale)
    return StepResult(s, (Reply(notice, sender="system"),), Handoff(reason, s.priority))


def step(state: ConversationState, text: str, ann: Annotation, policy: Policy, now: float) -> StepResult:
    s = copy.deepcopy(state)
    s.turns += 1
    s.created_at = s.created_at or now
    s.updated_at = now
    if ann.language in ("en", "zh"):
        s.locale = ann.language
    confident = ann.intent_confidence >= policy.min_intent_confidence
    angry = ann.sentiment == "negative" and ann.sentiment_score <= policy.angry_sentiment_score
    s.remember(ann.intent if confident else None, ann.sentiment_score)
    s.angry = s.angry + 1 if angry else 0

    if s.status != "bot":
        # An agent owns the conversation, or it waits for one: the bot stays silent.
        # Anger while waiting moves the conversation up the queue.
        if s.status == "queued" and angry and s.priority < policy.priority["angry"]:
            s.priority = policy.priority["angry"]
            s.handoff_reason = "angry"
            return StepResult(s, (), Handoff("angry", s.priority))
        return StepResult(s)

    if s.awaiting:
        value = extract_slot(policy, s.awaiting["slot"], text)
        if value:
            s.slots[s.awaiting["slot"]] = value
            intent = s.awaiting["intent"]
            s.awaiting = None
            s.misunderstood = 0
            return _answer(policy, s, intent)

    if angry and s.angry >= policy.angry_handoff_after:
        return _hand_off(policy, s, "angry", now)

    if not confident or ann.intent not in policy.intents and ann.intent not in policy.handoff_intents:
        s.misunderstood += 1
        if s.misunderstood >= policy.misunderstood_handoff_after:
            return _hand_off(policy, s, "not_understood", now)
        return StepResult(
            s, (Reply(policy.message("not_understood", s.locale), quick_replies=policy.quick_replies(s.locale)),)
        )
    s.misunderstood = 0

    if ann.intent in policy.handoff_intents:
        return _hand_off(policy, s, "requested", now)

    for slot in policy.intents[ann.intent].needs:
        value = extract_slot(policy, slot, text)
        if value:
            s.slots[slot] = value
        elif slot not in s.slots:
            s.awaiting = {"intent": ann.intent, "slot": slot}
            return StepResult(s, (Reply(policy.message(f"ask_{slot}", s.locale)),))
    return _answer(policy, s, ann.intent)


def agent_claimed(state: ConversationState, agent: str, policy: Policy, now: float) -> tuple[ConversationState, Reply]:
    s = copy.deepcopy(state)
    s.status, s.agent, s.updated_at = "agent", agent, now
    return s, Reply(policy.message("agent_joined", s.locale), sender="system")


def agents_busy(state: ConversationState, policy: Policy, now: float) -> tuple[ConversationState, Reply]:
    """Nobody claimed the conversation in time: offer to keep waiting or to leave a message (once)."""
    s = copy.deepcopy(state)
    s.busy_notice_at, s.updated_at = now, now
    text = policy.message("agents_busy", s.locale)
    return s, Reply(text, sender="system", quick_replies=policy.quick_replies(s.locale, "agents_busy_quick_replies"))


def resolved(state: ConversationState, policy: Policy, now: float) -> tuple[ConversationState, Reply]:
    s = copy.deepcopy(state)
    s.status, s.agent, s.handoff_reason, s.priority, s.queued_at = "bot", None, None, 0, None
    s.busy_notice_at = None
    s.misunderstood = s.angry = 0
    s.updated_at = now
    return s, Reply(policy.message("back_to_bot", s.locale), sender="system")
