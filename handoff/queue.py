"""The human queue: list, claim, reply, resolve.

Conversations wait in a Redis sorted set ordered by priority, then waiting time
(see ``workers.dialogue_runner.queue_score``). Every change here happens under
the conversation's lock, the same one the dialogue worker holds, so an agent's
claim and a bot step never overwrite each other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from dialogue import ConversationState, Policy
from dialogue.engine import agent_claimed, agents_busy, episode_end, resolved
from shopbot.store import ConversationStore, Outgoing
from shopbot.transcripts import event_rows, transcript_row

LOCK_WAIT_S = 5.0


class HandoffError(Exception):
    """An agent action that cannot be done; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class QueueItem:
    conversation_id: str
    channel: str
    status: str
    priority: int
    reason: str | None
    waiting_s: float
    locale: str
    last_intents: list[str]
    sentiment_scores: list[float]
    agent: str | None
    last_messages: list[dict[str, object]]


class HandoffQueue:
    def __init__(self, store: ConversationStore, policy: Policy):
        self.store = store
        self.policy = policy

    def waiting(self, last_messages: int = 5) -> list[QueueItem]:
        """Queued conversations, first to serve first."""
        now = time.time()
        out = []
        for cid, _score in self.store.queue():
            raw = self.store.state(cid)
            if raw is None:
                self.store.drop_expired_from_queue(cid)  # expired (TTL) while it waited: nobody to serve
                continue
            state = ConversationState.from_dict(raw)
            if state.status != "queued":
                continue
            out.append(self._item(cid, state, now, last_messages))
        return out

    def get(self, cid: str, last_messages: int = 50) -> QueueItem:
        raw = self.store.state(cid)
        if raw is None:
            raise HandoffError(404, f"no conversation {cid!r}")
        return self._item(cid, ConversationState.from_dict(raw), time.time(), last_messages)

    def _item(self, cid: str, state: ConversationState, now: float, n: int) -> QueueItem:
        msgs = self.store.messages_after(cid)[-n:] if n else []
        return QueueItem(
            conversation_id=cid,
            channel=self.store.meta(cid).get("channel", cid.split(":", 1)[0]),
            status=state.status,
            priority=state.priority,
            reason=state.handoff_reason,
            waiting_s=round(now - state.queued_at, 1) if state.queued_at else 0.0,
            locale=state.locale,
            last_intents=state.last_intents,
            sentiment_scores=state.sentiment_scores,
            agent=state.agent,
            last_messages=[m.to_json() for m in msgs],
        )

    def claim(self, cid: str, agent: str) -> None:
        with self._locked(cid) as (token, state):
            if state.status == "agent":
                raise HandoffError(409, f"already claimed by {state.agent}")
            if state.status != "queued":
                raise HandoffError(409, f"conversation is not waiting for an agent (status {state.status})")
            new, notice = agent_claimed(state, agent, self.policy, time.time())
            self._commit(cid, token, new, [Outgoing(notice.sender, notice.text)], dequeue=True)

    def reply(self, cid: str, agent: str, text: str) -> None:
        with self._locked(cid) as (token, state):
            self._check_owner(state, agent)
            self._commit(cid, token, state, [Outgoing("agent", text)], agent=agent)

    def note(self, cid: str, agent: str, text: str) -> None:
        """An internal note: kept with the transcript (``from: note``), never in the shopper's log."""
        if not text.strip():
            raise HandoffError(400, "the note is empty")
        raw = self.store.state(cid)
        if raw is None:
            raise HandoffError(404, f"no conversation {cid!r}")
        row = transcript_row(
            cid, self.store.meta(cid), f"note:{uuid.uuid4().hex}", "note", text, time.time(), agent=agent
        )
        self.store.add_transcript_rows([row])

    def busy_notice(self, cid: str, after_s: float) -> bool:
        """Tell a shopper nobody claimed yet that they may keep waiting or leave a message (once per hand-off)."""

        def due(raw: dict[str, object] | None, now: float) -> ConversationState | None:
            state = ConversationState.from_dict(raw) if raw else None
            if state is None or state.status != "queued" or state.busy_notice_at or not state.queued_at:
                return None
            return state if now - state.queued_at >= after_s else None

        # Checked without the lock first: the sweeper asks every few seconds about
        # every queued conversation, and most are not due.
        if due(self.store.state(cid), time.time()) is None:
            return False
        with self.store.lock(cid, wait_s=0) as token:
            now = time.time()
            state = due(self.store.state(cid), now) if token else None
            if state is None:
                return False
            new, notice = agents_busy(state, self.policy, now)
            self._commit(cid, token, new, [Outgoing(notice.sender, notice.text, notice.quick_replies)])
            return True

    def resolve(self, cid: str, agent: str) -> None:
        with self._locked(cid) as (token, state):
            if state.status == "bot":
                raise HandoffError(409, "conversation is already with the bot")
            if state.status == "agent":
                self._check_owner(state, agent)
            new, notice, outcome = resolved(state, self.policy, time.time())
            out = [Outgoing(notice.sender, notice.text, notice.quick_replies)]
            self._commit(cid, token, new, out, dequeue=True, agent=agent, events=[outcome], close_at=0)

    @staticmethod
    def _check_owner(state: ConversationState, agent: str) -> None:
        if state.status != "agent":
            raise HandoffError(409, f"claim the conversation first (status {state.status})")
        if state.agent != agent:
            raise HandoffError(403, f"conversation is claimed by {state.agent}, not {agent}")

    @contextmanager
    def _locked(self, cid: str) -> Iterator[tuple[str, ConversationState]]:
        with self.store.lock(cid, wait_s=LOCK_WAIT_S) as token:
            if token is None:
                raise HandoffError(503, "conversation is busy; try again")
            raw = self.store.state(cid)
            if raw is None:
                raise HandoffError(404, f"no conversation {cid!r}")
            yield token, ConversationState.from_dict(raw)

    def _commit(
        self,
        cid: str,
        token: str,
        state: ConversationState,
        out: list[Outgoing],
        dequeue: bool = False,
        agent=None,
        events: Sequence[tuple[str, str]] = (),
        close_at: float | None = None,
    ) -> None:
        meta = self.store.meta(cid)
        now = time.time()
        who = agent or state.agent
        rows = [
            transcript_row(cid, meta, f"{m.sender}:{uuid.uuid4().hex}", m.sender, m.text, now, agent=who) for m in out
        ]
        rows += event_rows(cid, meta, f"agent:{uuid.uuid4().hex}", events, now, language=state.locale, agent=who)
        if close_at is None:
            close_at = episode_end(state, self.policy, now)  # with a person: handed off unless resolved in time
        self.store.commit(cid, token, state.to_dict(), out, transcript=rows, dequeue=dequeue, close_at=close_at)
