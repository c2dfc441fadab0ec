"""Run the dialogue over a conversation's inbox, one message at a time, in arrival order.

Only the holder of the conversation's lock works on it; every step is committed
with the message's removal from the inbox in one transaction, so a step done
twice (a redelivered task) is refused the second time and a step cut short (a
killed worker) is done again by the next one.
"""

from __future__ import annotations

import logging
import time

from dialogue import Annotation, ConversationState, Policy, step
from dialogue.engine import close_episode, episode_end
from shopbot import metrics
from shopbot.store import ConversationStore, LockLost, Outgoing
from shopbot.transcripts import event_rows, transcript_row

log = logging.getLogger(__name__)


def queue_score(priority: int, queued_at: float) -> float:
    """Lower first: higher priority, then longer wait."""
    return -priority * 1e11 + queued_at


IDENTIFIED_CHANNELS = ("telegram", "slack")  # the platform vouches for the sender's id


def customer_of(meta: dict[str, str]) -> str | None:
    """Who the shopper is, where the channel says so (their Telegram or Slack user id); None on the web."""
    return meta.get("sender") or None if meta.get("channel") in IDENTIFIED_CHANNELS else None


def run_conversation(store: ConversationStore, policy: Policy, cid: str, shop=None, llm=None) -> int:
    """Handle every annotated message at the head of the inbox; returns how many were handled.

    Returns when the inbox is empty, when the head message still waits for its
    annotation (the NLU task will call again), or when another worker holds
    the lock (it re-checks the inbox after letting go, so nothing is stranded).
    """
    handled = 0
    while True:
        with store.lock(cid) as token:
            if token is None:
                return handled
            while (head := _ready_head(store, cid)) is not None:
                t0 = time.perf_counter()
                try:
                    _one_step(store, policy, cid, *head, token, shop, llm)
                except LockLost as exc:
                    log.warning("dialogue step not committed: %s", exc, extra={"conversation_id": cid})
                    return handled
                metrics.DIALOGUE_STEP_SECONDS.observe(time.perf_counter() - t0)
                handled += 1
        # Let go, then look once more: a message annotated while we held the lock
        # had its wake-up call turned away by that lock.
        if _ready_head(store, cid) is None:
            return handled


def close_idle(store: ConversationStore, policy: Policy, now: float | None = None) -> int:
    """End the episodes that saw nothing for their idle time (dialogue.engine.close_episode); returns how many.

    Under the conversation's lock, with its state read again: a message that arrived meanwhile moved the
    episode's end, and a conversation another worker is busy with is left for the next sweep.
    """
    now = time.time() if now is None else now
    closed = 0
    for cid in store.closing(now):
        with store.lock(cid, wait_s=0) as token:
            if token is None:
                continue
            raw = store.state(cid)
            state = ConversationState.from_dict(raw) if raw else None
            if state is None or state.opened_at is None:
                store.schedule_close(cid, 0)  # expired, or ended already
                continue
            # The later of what the last commit scheduled (read again under the lock: a commit since the listing
            # moved it) and what the state's own last change gives.
            due = max(store.close_due(cid) or 0.0, episode_end(state, policy, state.updated_at))
            if due > now:
                store.schedule_close(cid, due)
                continue
            new, outcome = close_episode(state, now)
            rows = event_rows(cid, store.meta(cid), f"idle:{now:.6f}", [outcome], now, language=new.locale)
            store.commit(cid, token, new.to_dict(), transcript=rows, close_at=0)
            closed += 1
    return closed


def _ready_head(store: ConversationStore, cid: str) -> tuple[str, dict] | None:
    """The inbox's oldest message with its annotation, or None (empty, or still with the NLU)."""
    mid = store.inbox_head(cid)
    ann = store.annotation(cid, mid) if mid else None
    return (mid, ann) if ann is not None else None


def _one_step(
    store: ConversationStore, policy: Policy, cid: str, mid: str, ann: dict, token: str, shop=None, llm=None
) -> None:
    msg = store.message(cid, mid)
    meta = store.meta(cid)
    state = ConversationState.from_dict(store.state(cid))
    now = time.time()
    if msg is None:  # expired from the log: nothing to answer, just drop it from the inbox
        store.commit(cid, token, state.to_dict(), consume=mid)
        return
    result = step(state, msg.text, Annotation.from_dict(ann), policy, now, shop, customer_of(meta))
    replies = result.replies
    if llm is not None:
        replies = llm.polish(replies, msg.text, result.state.locale)
    outgoing = [Outgoing(r.sender, r.text, r.quick_replies) for r in replies]
    rows = [
        transcript_row(
            cid,
            meta,
            mid,
            "shopper",
            msg.text,
            msg.ts,
            language=ann.get("language"),
            intent=ann.get("intent"),
            intent_confidence=ann.get("intent_confidence"),
            sentiment=ann.get("sentiment"),
            sentiment_score=ann.get("sentiment_score"),
            # A hand-off as handoff:REASON; a move up the queue while waiting is no new hand-off.
            action=f"handoff:{result.handoff.reason}"
            if result.handoff and result.action == "handoff"
            else result.action,
        )
    ]
    rows += [transcript_row(cid, meta, f"{mid}:r{i}", r.sender, r.text, now) for i, r in enumerate(replies)]
    rows += event_rows(cid, meta, mid, result.events, now, language=result.state.locale)
    score = None
    if result.handoff is not None:
        score = queue_score(result.handoff.priority, result.state.queued_at or now)
    store.commit(
        cid,
        token,
        result.state.to_dict(),
        outgoing,
        consume=mid,
        transcript=rows,
        queue_score=score,
        close_at=episode_end(result.state, policy, now),
    )
    if result.handoff is not None and state.status != "queued":  # not a re-scoring while it waits
        metrics.HANDOFFS.labels(result.handoff.reason).inc()
    log.info(
        "dialogue step",
        extra={
            "conversation_id": cid,
            "message_id": mid,
            "intent": ann.get("intent"),
            "status": result.state.status,
            "replies": len(outgoing),
            "handoff": result.handoff.reason if result.handoff else None,
        },
    )
