"""The agents' desk in Slack: one card per hand-off, its thread is the conversation.

- A conversation handed off gets a card in the agents' channel: shopper,
  channel, language, intents, sentiment trend, waiting time, place in the
  queue, the last messages, and a Claim button. A card is updated whenever what
  it shows changes (claimed by whom, resolved, its place in the queue).
- The card's thread mirrors the shopper's messages; what an agent writes in
  the thread goes to the shopper (``gateway.slack_routes``); an internal note is
  the card's "Add note" button (a modal) or ``/handoff note``, never a guess
  from the text.

``SlackDesk.sync`` is idempotent: it compares what Slack shows (kept in
Redis) with the conversation and only calls Slack for the difference, so the
worker can run it after every step without double posts.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from channels.slack import SlackSender, escape
from shopbot.store import ConversationStore

from .queue import HandoffQueue, QueueItem

log = logging.getLogger(__name__)

CLAIM, RESOLVE, NOTE = "desk_claim", "desk_resolve", "desk_note"
NOTE_VIEW = "desk_note_view"
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


def who(agent: str | None) -> str:
    """An agent as Slack shows them: a mention for Slack users, the name for API agents."""
    if not agent:
        return "nobody"
    return f"<@{agent}>" if SLACK_USER.match(agent) else escape(agent)


def trend(scores: list[float]) -> str:
    if not scores:
        return "no messages scored yet"
    last = scores[-5:]
    arrow = ""
    if len(last) > 1:
        delta = last[-1] - last[0]
        arrow = " (falling)" if delta < -0.3 else " (rising)" if delta > 0.3 else " (steady)"
    return " → ".join(f"{s:+.1f}" for s in last) + arrow


def card_blocks(item: QueueItem, meta: dict[str, str], position: int | None, total: int) -> list[dict[str, Any]]:
    status = {
        "queued": f":hourglass: *Waiting* - {position} of {total} in the queue"
        if position
        else ":hourglass: *Waiting*",
        "agent": f":speech_balloon: *Claimed by {who(item.agent)}* - reply in this thread to write to the shopper",
        "bot": ":white_check_mark: *Resolved* - back with the bot",
        "closed": ":lock: *Closed*",
    }[item.status]
    queued_at = time.time() - item.waiting_s if item.waiting_s else None
    since = (
        f"<!date^{int(queued_at)}^{{time}}|{time.strftime('%H:%M', time.gmtime(queued_at))} UTC>" if queued_at else "-"
    )
    fields = [
        f"*Shopper*\n{escape(meta.get('sender', '?'))} on {item.channel}",
        f"*Language*\n{item.locale}",
        f"*Reason / priority*\n{item.reason or '-'} / {item.priority}",
        f"*Waiting since*\n{since}",
        f"*Intents*\n{', '.join(item.last_intents[-3:]) or '-'}",
        f"*Sentiment*\n{trend(item.sentiment_scores)}",
    ]
    # What a shopper wrote is text, never Slack markup: no <!channel> pings, fake mentions or disguised links.
    lines = [
        f"{'*Shopper*' if m['from'] == 'shopper' else '_' + str(m['from']) + '_'}: {escape(str(m['text'])[:300])}"
        for m in item.last_messages[-5:]
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": status}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines) or "_no messages_"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"conversation `{escape(item.conversation_id)}`"}]},
    ]
    buttons = []
    if item.status == "queued":
        buttons.append(_button("Claim", CLAIM, item.conversation_id, "primary"))
    if item.status == "agent":
        buttons.append(_button("Add note", NOTE, item.conversation_id))
        buttons.append(_button("Resolve", RESOLVE, item.conversation_id, "danger"))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


def _button(label: str, action_id: str, cid: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": cid,
    }
    if style:
        b["style"] = style
    return b


def note_text(agent: str, text: str) -> str:
    """An internal note as it is posted in the card's thread."""
    return f":memo: *Internal note* from {who(agent)} (not sent to the shopper):\n{text}"


def note_modal(cid: str) -> dict[str, Any]:
    """The "Add note" modal: what is typed here stays with the agents."""
    return {
        "type": "modal",
        "callback_id": NOTE_VIEW,
        "private_metadata": cid,
        "title": {"type": "plain_text", "text": "Internal note"},
        "submit": {"type": "plain_text", "text": "Save note"},
        "blocks": [
            {
                "type": "input",
                "block_id": "note",
                "label": {"type": "plain_text", "text": "Seen by agents only, never by the shopper"},
                "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
            }
        ],
    }


class SlackDesk:
    def __init__(self, store: ConversationStore, queue: HandoffQueue, sender: SlackSender, channel: str):
        self.store, self.queue, self.slack, self.channel = store, queue, sender, channel

    def sync(self, cid: str) -> None:
        """Bring Slack up to date with one conversation, and the queue places on the other cards."""
        if not self.store.desk_card(cid):
            state = self.store.state(cid) or {}
            if state.get("status") not in ("queued", "agent"):
                return  # never handed off: the common case, two reads
        waiting = [i.conversation_id for i in self.queue.waiting(last_messages=0)]
        self._sync_card(cid, waiting)
        for other in waiting:
            if other != cid and self.store.desk_card(other):
                self._sync_card(other, waiting)

    def _sync_card(self, cid: str, waiting: list[str]) -> None:
        item = self.queue.get(cid, last_messages=5)
        card = self.store.desk_card(cid)
        position = waiting.index(cid) + 1 if cid in waiting else None
        shown = f"{item.status}|{item.agent}|{position}/{len(waiting)}|{item.priority}"
        meta = self.store.meta(cid)
        if not card:
            if item.status not in ("queued", "agent"):
                return
            blocks = card_blocks(item, meta, position, len(waiting))
            res = self.slack.call("chat.postMessage", channel=self.channel, text=self._summary(item), blocks=blocks)
            last = self.store.messages_after(cid)[-1:]
            card = {"channel": str(res.get("channel", self.channel)), "ts": str(res["ts"]), "shown": shown}
            # The card already shows the last messages: the thread mirrors what comes after.
            card["cursor"] = last[0].id if last else "0"
            self.store.save_desk_card(cid, card)
            log.info("hand-off card posted", extra={"conversation_id": cid})
        elif card.get("shown") != shown:
            blocks = card_blocks(item, meta, position, len(waiting))
            self.slack.call(
                "chat.update", channel=card["channel"], ts=card["ts"], text=self._summary(item), blocks=blocks
            )
            if item.status == "agent" and not card.get("shown", "").startswith("agent|"):
                self._thread(
                    card, f"{who(item.agent)} took this conversation. Messages in this thread go to the shopper."
                )
            self.store.save_desk_card(cid, {"shown": shown})
        if item.status in ("queued", "agent"):
            self._mirror(cid, card)

    def _mirror(self, cid: str, card: dict[str, str]) -> None:
        """The shopper's new messages into the card's thread."""
        for entry in self.store.messages_after(cid, card.get("cursor") or "0"):
            if entry.sender == "shopper":
                self._thread(card, f"*Shopper:* {escape(entry.text)}")
            card["cursor"] = entry.id
            self.store.save_desk_card(cid, {"cursor": entry.id})

    def _thread(self, card: dict[str, str], text: str) -> None:
        self.slack.call("chat.postMessage", channel=card["channel"], thread_ts=card["ts"], text=text)

    @staticmethod
    def _summary(item: QueueItem) -> str:
        return f"Hand-off ({item.reason or 'agent'}): {item.channel} shopper, {item.status}"
