"""After a step: the shopper's platform and the agents' desk catch up with the conversation's log.

Replies live in the conversation's log first (the web widget reads them there).
For Telegram and Slack shoppers, ``deliver_to_shopper`` sends every bot, agent
and system message after the conversation's ``shopper`` cursor and moves the
cursor past each one once the platform took it, so a task run twice sends
nothing twice and a task cut short leaves the rest for the next run.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from admin.credentials import Channels
from channels import slack as slack_channel
from channels import telegram as telegram_channel
from channels.base import SendFailed
from handoff.queue import HandoffQueue
from handoff.slack_desk import SlackDesk
from shopbot import metrics
from shopbot.store import ConversationStore

log = logging.getLogger(__name__)

AGENT_LABEL = {"en": "Agent", "zh": "客服"}


@lru_cache(maxsize=32)
def telegram_sender(token: str, base_url: str) -> telegram_channel.TelegramSender:
    return telegram_channel.TelegramSender(token, base_url)


@lru_cache(maxsize=32)
def slack_sender(token: str, base_url: str) -> slack_channel.SlackSender:
    return slack_channel.SlackSender(token, base_url)


def sender_for(channel: str, meta: dict[str, str], chans: Channels):
    """The sender for a conversation: the Telegram bot it is with (by bot id), the Slack app it came through."""
    if channel == telegram_channel.NAME:
        bot = chans.telegram_bot(meta.get("account", ""))
        return telegram_sender(bot.token, bot.api_base_url) if bot else None
    if channel == slack_channel.NAME:
        # The workspace's token: pasted for it, or (through the "Add to Slack" app) its installation, or
        # the app's; always with the URL that very token belongs to (Channels.slack_auth).
        auth = chans.slack_auth(meta.get("account"), chans.slack_app(meta.get("via")))
        return slack_sender(auth.token, auth.base_url) if auth else None
    return None


def desk_sender(chans: Channels) -> tuple[slack_channel.SlackSender, str] | None:
    """The sender for the agents' desk (the desk's workspace token) and its agents' channel."""
    app = chans.desk()
    if app is None or not app.agent_channel:
        return None
    # The desk's workspace is the app's team_id (SHOPBOT_SLACK_TEAM_ID, or learned by Test): its pasted
    # token, else (the "Add to Slack" app) that workspace's installation. Without a team_id, the app's
    # pasted token; an installation is never guessed (a second workspace's install must not move the desk).
    auth = chans.slack_auth(app.team_id, app)
    if auth is None:
        if chans.installations and not app.team_id:
            log.warning("no token for the agents' desk: set SHOPBOT_SLACK_TEAM_ID to the desk's workspace")
        return None
    return slack_sender(auth.token, auth.base_url), app.agent_channel


def desk_for(store: ConversationStore, queue: HandoffQueue, chans: Channels) -> SlackDesk | None:
    found = desk_sender(chans)
    if found is None:
        return None
    return SlackDesk(store, queue, found[0], found[1])


def deliver_to_shopper(store: ConversationStore, chans: Channels, cid: str) -> int:
    """Send what the shopper has not received yet; returns how many messages were sent."""
    meta = store.meta(cid)
    channel = meta.get("channel", cid.split(":", 1)[0])
    if channel not in (telegram_channel.NAME, slack_channel.NAME):
        return 0  # the web widget reads the log itself
    sender = sender_for(channel, meta, chans)
    if sender is None:
        log.warning("no credentials for %s: replies stay in the log", channel, extra={"conversation_id": cid})
        return 0
    chat, locale = meta.get("chat") or cid.split(":", 2)[2], meta.get("locale", "en")
    sent = 0
    for entry in store.messages_after(cid, store.cursor(cid, "shopper")):
        if entry.sender in ("bot", "agent", "system"):
            text = f"{AGENT_LABEL.get(locale, 'Agent')}: {entry.text}" if entry.sender == "agent" else entry.text
            try:
                sender.send(chat, text, entry.quick_replies)
                sent += 1
                metrics.PLATFORM_SENDS.labels(channel, "sent").inc()
            except SendFailed as exc:
                metrics.PLATFORM_SENDS.labels(channel, "failed").inc()
                # A refusal for good (the shopper blocked the bot, the chat is gone): trying
                # again cannot help; the message stays in the log and the transcript.
                log.error("message not delivered: %s", exc, extra={"conversation_id": cid, "message_id": entry.id})
        store.set_cursor(cid, "shopper", entry.id)
    return sent
