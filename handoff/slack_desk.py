"""The agents' desk in Slack: one card per hand-off, its thread is the conversation.

- A conversation handed off gets a card in the agents' channel: shopper,
  channel, language, intents, sentiment trend, waiting time, place in the
  queue, the last messages, and a Claim button. A card is updated whenever what
  it shows changes (claimed by whom, resolved, its place in the queue).
- The card's thread mirrors the shopper's messages; what an agent writes in
  the thread goes to the shopper (``gateway.slack_routes``); an internal note is
  the card's "Add note" button (a modal) or ``/handoff note``, never a guess
  from the text.
- "Correct reading" (every card) opens a modal with the shopper's last
  messages, the bot's reading of each and selects for the right intent and
  sentiment; what an agent picks is stored as their correction
  (``shopbot.corrections``). A card of a hand-off where the bot did not
  understand says its messages are offered for labelling.

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
from shopbot.corrections import SENTIMENTS
from shopbot.store import ConversationStore, key, parse_entry

from .queue import HandoffQueue, QueueItem

log = logging.getLogger(__name__)

CLAIM, RESOLVE, NOTE = "desk_claim", "desk_resolve", "desk_note"
NOTE_VIEW = "desk_note_view"
CORRECT, CORRECT_VIEW = "desk_correct", "desk_correct_view"
CORRECTABLE = 5  # the shopper's last messages the "Correct reading" modal lists
LABELLING_NOTE = (
    ":label: The bot did not understand this shopper: their messages are offered for labelling "
    "(*Correct reading*, or `GET /handoff/api/labelling`)."
)
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
    if item.reason == "not_understood":
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": LABELLING_NOTE}]})
    buttons = []
    if item.status == "queued":
        buttons.append(_button("Claim", CLAIM, item.conversation_id, "primary"))
    if item.status == "agent":
        buttons.append(_button("Add note", NOTE, item.conversation_id))
        buttons.append(_button("Resolve", RESOLVE, item.conversation_id, "danger"))
    if item.status in ("queued", "agent", "bot"):
        buttons.append(_button("Correct reading", CORRECT, item.conversation_id))
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


def last_readings(store: ConversationStore, cid: str, n: int = CORRECTABLE) -> list[dict[str, Any]]:
    """The shopper's last ``n`` messages in the log, oldest first, each with the bot's reading of it."""
    out: list[dict[str, Any]] = []
    for entry_id, fields in store.r.xrevrange(key(cid, "log"), count=200):
        entry = parse_entry(entry_id, fields)
        if entry.sender != "shopper":
            continue
        ann = store.annotation(cid, entry.id) or {}
        out.append({"message_id": entry.id, "text": entry.text, **{k: ann.get(k) for k in READING}})
        if len(out) == n:
            break
    return out[::-1]


READING = ("intent", "intent_confidence", "sentiment")


def _select(block_id: str, label: str, values: list[str], read: str) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": True,  # left empty: the bot read it right
        "label": {"type": "plain_text", "text": label},
        "hint": {"type": "plain_text", "text": read[:150]},
        "element": {
            "type": "static_select",
            "action_id": "label",
            "placeholder": {"type": "plain_text", "text": "right as the bot read it"},
            "options": [{"text": {"type": "plain_text", "text": v[:75]}, "value": v} for v in values],
        },
    }


def correction_modal(cid: str, readings: list[dict[str, Any]], intents: list[str]) -> dict[str, Any]:
    """The "Correct reading" modal: each of the shopper's last messages with the bot's reading, and a
    select for the right intent and one for the sentiment (both optional)."""
    blocks: list[dict[str, Any]] = []
    for m in readings:
        conf = m.get("intent_confidence")
        read = f"{m.get('intent') or '?'}" + (f" ({conf:.2f})" if isinstance(conf, int | float) else "")
        # What a shopper wrote is text, never Slack markup.
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Shopper:* {escape(m['text'][:300])}"}})
        blocks.append(_select(f"fix:{m['message_id']}:intent", "Intent", intents, f"The bot read: {read}"))
        blocks.append(
            _select(
                f"fix:{m['message_id']}:sentiment", "Sentiment", list(SENTIMENTS),
                f"The bot read: {m.get('sentiment') or '?'}",
            )
        )  # fmt: skip
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CORRECT_VIEW,
        "private_metadata": cid,
        "title": {"type": "plain_text", "text": "Correct the reading"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks or [{"type": "section", "text": {"type": "mrkdwn", "text": "_No shopper messages._"}}],
    }
    if blocks:
        view["submit"] = {"type": "plain_text", "text": "Save"}
    return view


def picked_corrections(view: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """What the agent picked in a submitted "Correct reading" modal: message id -> intent and sentiment
    (None where left empty); messages with nothing picked are left out."""
    out: dict[str, dict[str, str | None]] = {}
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    for block_id, actions in values.items() if isinstance(values, dict) else ():
        prefix, _, rest = str(block_id).partition(":")
        mid, _, field = rest.rpartition(":")
        select = actions.get("label") if isinstance(actions, dict) else None
        if prefix != "fix" or field not in ("intent", "sentiment") or not isinstance(select, dict):
            continue
        chosen = select.get("selected_option")
        value = chosen.get("value") if isinstance(chosen, dict) else None
        if isinstance(value, str) and value:
            out.setdefault(mid, {"intent": None, "sentiment": None})[field] = value
    return out


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
