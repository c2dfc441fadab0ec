"""Slack: Events API, interactivity and slash commands in; Web API calls out (slack-sdk).

The gateway's slack-bolt app (``gateway/slack_routes.py``) receives and dispatches;
what a payload means is decided here, so it stays testable on recorded payloads.
Inbound: ``verify`` checks the request signature (v0 HMAC-SHA256 over
``v0:timestamp:body``, 5-minute window) with slack-sdk's ``SignatureVerifier``;
``parse_event`` tells a shopper's message (a DM to the bot, or a mention) from
an agent's reply in a hand-off card's thread and from what we ignore (bots, our
own posts, edits). A conversation is a DM, or one user's messages in a channel
(``chat_key``). Outbound: ``SlackSender`` posts with ``chat.postMessage`` (in a
shared channel ``chat.postEphemeral``, to that user alone),
quick replies as Block Kit buttons, and retries once after a 429 as Slack's
``Retry-After`` asks.

The Web API base URL is a setting (``SHOPBOT_SLACK_API_BASE_URL``), so the
tests' local server stands in for slack.com.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .base import ChannelError, InboundMessage, RateLimited, SendFailed, plain_error

NAME = "slack"
DEFAULT_API_BASE_URL = "https://slack.com/api/"
MAX_TEXT = 3000  # a section block's text limit
QUICK_REPLY_ACTION = "quick_reply"
# A conversation in a shared channel is one user's: its chat id is "<channel>.<user>",
# and every reply is ephemeral (seen by that user only).
SHARED_CHAT_SEP = "."


def chat_key(channel: str, user: str) -> str:
    """The chat a message belongs to: a DM (``D...``) is the shopper's own; in a channel
    several people may talk to the bot, so each of them has a conversation of their own
    there (else a second user would act as the first, order ownership included)."""
    return channel if channel.startswith("D") or not user else f"{channel}{SHARED_CHAT_SEP}{user}"


def verify(headers: dict[str, str] | Any, body: bytes, signing_secret: str | None) -> None:
    """Refuse a request that Slack did not sign with our signing secret, or signed too long ago."""
    from slack_sdk.signature import SignatureVerifier

    if not signing_secret:
        raise ChannelError("the Slack channel is not configured (no signing secret)", 503)
    ts, sig = headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
    if not ts or not sig:
        raise ChannelError("missing X-Slack-Signature or X-Slack-Request-Timestamp header", 401)
    try:
        age = abs(time.time() - int(ts))
    except ValueError:
        raise ChannelError("X-Slack-Request-Timestamp is not a number", 401) from None
    if age > 300:
        raise ChannelError("stale request: X-Slack-Request-Timestamp is more than 5 minutes away", 403)

    if not SignatureVerifier(signing_secret).is_valid(body=body, timestamp=ts, signature=sig):
        raise ChannelError("wrong X-Slack-Signature", 403)


def form_payload(body: bytes) -> dict[str, Any]:
    """Interactivity posts ``payload=<JSON>`` form-encoded."""
    raw = parse_qs(body.decode("utf-8", "replace")).get("payload", [""])[0]
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ChannelError("interaction without a JSON payload field") from None
    if not isinstance(payload, dict) or "type" not in payload:
        raise ChannelError("interaction payload must be a JSON object with a type")
    return payload


@dataclass(frozen=True)
class ParsedEvent:
    """``kind``: ``challenge`` (url_verification), ``shopper`` (a message for the bot),
    ``agent_reply`` (a message in a hand-off card's thread), ``ignored``."""

    kind: str
    event_id: str = ""
    message: InboundMessage | None = None
    challenge: str = ""
    thread_ts: str = ""
    reason: str = ""


def parse_event(payload: Any, agent_channel: str | None = None) -> ParsedEvent:
    if not isinstance(payload, dict):
        raise ChannelError("an Events API request must be a JSON object")
    kind = payload.get("type")
    if kind == "url_verification":
        return ParsedEvent("challenge", challenge=str(payload.get("challenge", "")))
    if kind != "event_callback" or not isinstance(payload.get("event"), dict):
        return ParsedEvent("ignored", reason=f"event envelope {kind!r}")
    event, event_id, team = payload["event"], str(payload.get("event_id", "")), str(payload.get("team_id", ""))
    etype = event.get("type")
    if etype not in ("message", "app_mention"):
        return ParsedEvent("ignored", event_id, reason=f"event type {etype!r}")
    if event.get("bot_id") or event.get("subtype") or not event.get("user"):
        # bot posts (ours included), edits, deletions, joins...: not a person writing to us
        return ParsedEvent("ignored", event_id, reason=f"subtype {event.get('subtype')!r} or a bot")
    text = _strip_mentions(str(event.get("text", "")))
    channel = str(event.get("channel", ""))
    if agent_channel and channel == agent_channel:
        if etype == "message" and event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
            msg = _inbound(event_id, team, event, channel, text, payload, per_user=False)
            return ParsedEvent("agent_reply", event_id, msg, thread_ts=str(event["thread_ts"]))
        return ParsedEvent("ignored", event_id, reason="agents' channel, not in a card's thread")
    if etype == "message" and event.get("channel_type") != "im":
        return ParsedEvent("ignored", event_id, reason="a channel message that does not mention the bot")
    if not text:
        return ParsedEvent("ignored", event_id, reason="empty text")
    return ParsedEvent("shopper", event_id, _inbound(event_id, team, event, channel, text, payload))


def _strip_mentions(text: str) -> str:
    return re.sub(r"<@[A-Z0-9]+>", "", text).strip()


def _inbound(
    event_id: str, team: str, event: dict, channel: str, text: str, raw: dict, per_user: bool = True
) -> InboundMessage:
    """``per_user``: a shopper's message, keyed by ``chat_key``; an agent's reply keeps the channel itself."""
    return InboundMessage(
        id=event_id or f"slack-{event.get('ts')}",
        channel=NAME,
        account=team or "default",
        sender_id=str(event.get("user")),
        chat_id=chat_key(channel, str(event.get("user") or "")) if per_user else channel,
        text=text[:4000],
        sent_at=float(event["ts"]) if event.get("ts") else None,
        raw=raw,
    )


def quick_reply_message(payload: dict[str, Any]) -> InboundMessage | None:
    """A shopper's press on one of our quick-reply buttons, as the message it stands for."""
    actions = payload.get("actions") or []
    if payload.get("type") != "block_actions" or not actions:
        return None
    action = actions[0]
    if not str(action.get("action_id", "")).startswith(QUICK_REPLY_ACTION):
        return None
    user = (payload.get("user") or {}).get("id", "")
    channel = (payload.get("channel") or (payload.get("container") or {})).get("id") or (
        payload.get("container") or {}
    ).get("channel_id", "")
    team = (payload.get("team") or {}).get("id", "default")
    return InboundMessage(
        id=f"act-{action.get('action_ts', '')}-{user}",
        channel=NAME,
        account=team,
        sender_id=user,
        chat_id=chat_key(str(channel), user),
        text=str(action.get("value", ""))[:4000],
        raw=payload,
    )


def escape(text: str) -> str:
    """Slack's rule for text that is not meant as markup: ``&``, ``<`` and ``>`` as entities, so
    ``<!channel>`` or ``<https://x|y>`` in what a shopper wrote (and a reply quotes) stays text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message_blocks(text: str, quick_replies: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_TEXT]}}]
    if quick_replies:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": f"{QUICK_REPLY_ACTION}_{i}",
                        "text": {"type": "plain_text", "text": q[:75]},
                        "value": q[:2000],
                    }
                    for i, q in enumerate(quick_replies[:25])
                ],
            }
        )
    return blocks


class SlackSender:
    """Web API calls with slack-sdk's ``WebClient``; a 429 is waited out and retried once."""

    def __init__(self, token: str, api_base_url: str = DEFAULT_API_BASE_URL, timeout_s: int = 10):
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

        base = api_base_url if api_base_url.endswith("/") else api_base_url + "/"
        self.client = WebClient(
            token=token,
            base_url=base,
            timeout=timeout_s,
            retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=1)],
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        from slack_sdk.errors import SlackApiError

        try:
            return self.client.api_call(method, json=params).data  # type: ignore[return-value]
        except SlackApiError as exc:
            resp = exc.response
            if resp.status_code == 429:
                raise RateLimited(float(resp.headers.get("Retry-After", resp.headers.get("retry-after", 1)))) from None
            if resp.status_code >= 500:
                raise ConnectionError(f"Slack answered {resp.status_code} to {method}") from None
            raise SendFailed(f"Slack refused {method}: {resp.get('error')}") from None
        except OSError as exc:
            raise ConnectionError(f"Slack unreachable: {type(exc).__name__}") from None

    def post(self, channel: str, text: str, quick_replies: tuple[str, ...] = (), thread_ts: str | None = None) -> str:
        params: dict[str, Any] = {
            "channel": channel,
            "text": text[:MAX_TEXT],
            "blocks": message_blocks(text, quick_replies),
        }
        if thread_ts:
            params["thread_ts"] = thread_ts
        return str(self.call("chat.postMessage", **params).get("ts", ""))

    def send(self, chat_id: str, text: str, quick_replies: tuple[str, ...] = ()) -> str:
        """A reply to a shopper: plain text, never markup (a reply may quote the shopper's words).
        In a shared channel it is ephemeral: order details and buttons reach that shopper alone."""
        channel, _, user = chat_id.partition(SHARED_CHAT_SEP)
        if not user:
            return self.post(chat_id, escape(text), quick_replies)
        params = {"channel": channel, "user": user, "text": escape(text)[:MAX_TEXT]}
        return str(
            self.call("chat.postEphemeral", **params, blocks=message_blocks(params["text"], quick_replies)).get(
                "message_ts", ""
            )
        )


def check_credentials(secret: dict[str, str], conf: dict[str, Any], settings) -> dict[str, Any]:
    """This channel's credentials check (``channels.checks``): does Slack accept the bot token
    (``auth.test``), and which workspace is it? A plain answer either way, never an exception."""
    token = secret.get("bot_token", "")
    base = conf.get("api_base_url") or settings.slack_api_base_url
    try:
        who = SlackSender(token, base, timeout_s=5).call("auth.test")
    except Exception as exc:  # noqa: BLE001 - reported to the admin, never raised
        return {"ok": False, "detail": f"Slack did not accept the bot token ({plain_error(exc, token)})"}
    desk = f"; hand-off cards go to {conf['agent_channel']}" if conf.get("agent_channel") else ""
    return {
        "ok": True,
        "detail": f"Slack workspace {who.get('team') or who.get('team_id')}, bot {who.get('user_id')}{desk}",
        "team_id": who.get("team_id"),
    }
