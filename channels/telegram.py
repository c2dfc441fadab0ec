"""Telegram: webhook updates in, Bot API calls out (python-telegram-bot).

Inbound: ``parse_update`` turns an update into what the gateway should do with
it (a shopper message, ``/start``, something that is not text, or nothing).
Outbound: ``TelegramSender`` sends replies with ``sendMessage``; quick replies
become inline buttons whose presses come back as callback queries.

The Bot API base URL is a setting (``SHOPBOT_TELEGRAM_API_BASE_URL``): a
self-hosted Bot API server, or the tests' local one, stands in for
api.telegram.org.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from typing import Any

from .base import ChannelError, InboundMessage, RateLimited, SendFailed, plain_error

NAME = "telegram"
DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096  # sendMessage's limit


def account_of(token: str) -> str:
    """The bot's id, the part of its token before the colon (not secret)."""
    head = token.split(":", 1)[0]
    if not head.isdigit():
        raise ChannelError("a Telegram bot token looks like 123456:ABC...; check SHOPBOT_TELEGRAM_BOT_TOKEN", 500)
    return head


def check_secret(header: str | None, secret: str | None) -> None:
    """Refuse a webhook call that does not carry our secret token (compared in constant time)."""
    if not secret:
        raise ChannelError("the Telegram channel is not configured (no webhook secret)", 503)
    if not header:
        raise ChannelError(f"missing {SECRET_HEADER} header", 401)
    if not hmac.compare_digest(header.encode(), secret.encode()):
        raise ChannelError(f"wrong {SECRET_HEADER}", 403)


def locale_of(language_code: str | None) -> str | None:
    """Telegram's IETF language tag of the user's client, reduced to ours (zh / en)."""
    if not language_code:
        return None
    code = language_code.lower()
    return "zh" if code.startswith("zh") else "en" if code.startswith("en") else None


@dataclass(frozen=True)
class ParsedUpdate:
    """What a webhook update asks of us.

    ``kind``: ``message`` (text for the bot, callbacks included), ``start``
    (``/start``: greet), ``unsupported`` (a sticker, photo, voice...: say we
    read text only), ``ignored`` (bots, our own echoes, updates we do not use).
    """

    kind: str
    update_id: int
    message: InboundMessage | None = None
    callback_query_id: str | None = None
    reason: str = ""


def parse_update(data: Any, account: str) -> ParsedUpdate:
    """Parse a webhook update (the JSON Telegram posts) with python-telegram-bot's types."""
    from telegram import Update

    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise ChannelError("not a Telegram update: a JSON object with an integer update_id is expected")
    try:
        update = Update.de_json(data, None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ChannelError(f"malformed Telegram update: {exc}") from exc
    uid = update.update_id

    if (cq := update.callback_query) is not None:
        if cq.from_user is None:
            raise ChannelError("malformed Telegram update: a callback_query without from")
        if cq.from_user.is_bot or cq.message is None or not cq.data:
            return ParsedUpdate("ignored", uid, callback_query_id=cq.id, reason="callback without a message")
        text = _button_text(cq.message, cq.data) or cq.data
        inbound = _inbound(uid, account, cq.from_user, cq.message.chat.id, text, data)
        return ParsedUpdate("message", uid, inbound, callback_query_id=cq.id)

    msg = update.message or update.edited_message
    if msg is None:
        return ParsedUpdate("ignored", uid, reason="no message in this update")
    if msg.chat is None:
        raise ChannelError("malformed Telegram update: a message without chat")
    user = msg.from_user
    if user is None or user.is_bot:
        return ParsedUpdate("ignored", uid, reason="sent by a bot")
    if msg.chat.type != "private":
        return ParsedUpdate("ignored", uid, reason="not a private chat")
    text = (msg.text or "").strip()
    inbound = _inbound(uid, account, user, msg.chat.id, text, data, msg.date.timestamp() if msg.date else None)
    if not text:
        return ParsedUpdate("unsupported", uid, inbound)
    if text.split()[0].split("@")[0] == "/start":
        return ParsedUpdate("start", uid, inbound)
    return ParsedUpdate("message", uid, inbound)


def _inbound(uid: int, account: str, user, chat_id: int, text: str, raw: dict, sent_at: float | None = None):
    return InboundMessage(
        id=f"tg-{uid}",
        channel=NAME,
        account=account,
        sender_id=str(user.id),
        chat_id=str(chat_id),
        text=text[:4000],
        locale=locale_of(user.language_code),
        sent_at=sent_at,
        raw=raw,
    )


def _button_text(message, data: str) -> str | None:
    """The label of the inline button that was pressed (we send quick replies as ``qr:<n>``)."""
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()) or ():
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


def answer_callback(callback_query_id: str) -> dict[str, str]:
    """A Bot API call to return as the webhook's response: stops the button's spinner at no extra request."""
    return {"method": "answerCallbackQuery", "callback_query_id": callback_query_id}


class TelegramSender:
    """Sends through the Bot API (python-telegram-bot), one short event loop per batch of sends."""

    def __init__(self, token: str, api_base_url: str = DEFAULT_API_BASE_URL, timeout_s: float = 10.0):
        self._token = token
        self._base = api_base_url
        self._timeout = timeout_s

    def _bot(self):
        from telegram import Bot
        from telegram.request import HTTPXRequest

        request = HTTPXRequest(connect_timeout=self._timeout, read_timeout=self._timeout)
        return Bot(self._token, base_url=self._base, request=request), request

    def send(self, chat_id: str, text: str, quick_replies: tuple[str, ...] = (), max_wait_s: float = 30.0) -> int:
        """Send one message; returns Telegram's message id.

        A 429 is waited out (its ``retry_after``, at most ``max_wait_s``) and the
        send tried once more: Telegram did not deliver a message it answered 429
        to, so this cannot show it twice. Raises ``RateLimited`` if the second try
        is refused too, ``SendFailed`` for good refusals, ``ConnectionError`` when
        Telegram cannot be reached (try again later).
        """
        try:
            return asyncio.run(self._send(chat_id, text, quick_replies))
        except RateLimited as exc:
            if exc.retry_after > max_wait_s:
                raise
            time.sleep(exc.retry_after)
        return asyncio.run(self._send(chat_id, text, quick_replies))

    async def _send(self, chat_id: str, text: str, quick_replies: tuple[str, ...]) -> int:
        from telegram import InlineKeyboardButton, InlineKeyboardMarkup
        from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

        markup = None
        if quick_replies:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(q[:64], callback_data=f"qr:{i}")] for i, q in enumerate(quick_replies)]
            )
        bot, request = self._bot()
        await request.initialize()
        try:
            sent = await bot.send_message(int(chat_id), text[:MAX_TEXT], reply_markup=markup)
            return sent.message_id
        except RetryAfter as exc:
            ra = exc.retry_after
            raise RateLimited(ra.total_seconds() if hasattr(ra, "total_seconds") else float(ra)) from None
        except (Forbidden, BadRequest, InvalidToken) as exc:
            # The text of these errors is Telegram's description; it never holds the token.
            raise SendFailed(f"Telegram refused the message: {type(exc).__name__}: {exc.message}") from None
        except (TimedOut, NetworkError) as exc:
            raise ConnectionError(f"Telegram unreachable: {type(exc).__name__}") from None
        finally:
            await request.shutdown()

    def call(self, method: str, **params: Any) -> Any:
        """Any Bot API method by name (setWebhook, getWebhookInfo, getMe...); returns its result."""
        return asyncio.run(self._call(method, params))

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        bot, request = self._bot()
        await request.initialize()
        try:
            if method == "getMe" and not params:
                return (await bot.get_me()).to_dict()
            return await bot.do_api_request(method, api_kwargs=params)
        finally:
            await request.shutdown()


def check_credentials(secret: dict[str, str], conf: dict[str, Any], settings) -> dict[str, Any]:
    """This channel's credentials check (``channels.checks``): does Telegram know this bot (``getMe``)?
    A plain answer either way, never an exception."""
    token = secret.get("bot_token", "")
    base = conf.get("api_base_url") or settings.telegram_api_base_url
    try:
        me = TelegramSender(token, base, timeout_s=5).call("getMe")
    except Exception as exc:  # noqa: BLE001 - reported to the admin, never raised
        if type(exc).__name__ == "InvalidToken":
            return {
                "ok": False,
                "detail": "Telegram rejected the bot token (401 Unauthorized): check it with @BotFather",
            }
        return {"ok": False, "detail": f"Telegram could not be asked ({plain_error(exc, token)})"}
    return {"ok": True, "detail": f"Telegram knows this bot: @{me.get('username')} (id {me.get('id')})"}


def main(argv: list[str] | None = None) -> int:
    """``python -m channels.telegram set-webhook --url URL | webhook-info | delete-webhook``."""
    import argparse
    import json
    import sys

    from shopbot.settings import get_settings

    ap = argparse.ArgumentParser(prog="python -m channels.telegram", description="Telegram webhook registration")
    sub = ap.add_subparsers(dest="command", required=True)
    sw = sub.add_parser("set-webhook", help="point Telegram at the gateway (with the secret token)")
    sw.add_argument("--url", help="public base URL of the gateway (default: SHOPBOT_PUBLIC_URL)")
    sub.add_parser("webhook-info", help="what Telegram knows about our webhook (getWebhookInfo)")
    sub.add_parser("delete-webhook", help="stop Telegram from calling the gateway")
    ap.add_argument("--bot", help="a bot stored with `python -m admin channels set telegram NAME` (default: env)")
    args = ap.parse_args(argv)
    s = get_settings()
    token = s.telegram_bot_token.get_secret_value() if s.telegram_bot_token else None
    secret = s.telegram_webhook_secret.get_secret_value() if s.telegram_webhook_secret else None
    base_url = s.telegram_api_base_url
    if args.bot:
        from admin.credentials import CredentialError, CredentialStore
        from shopbot.db import engine_for

        try:
            found = CredentialStore.from_settings(s, engine_for(s.database_url)).secrets_of("telegram", args.bot)
        except CredentialError as exc:
            print(f"error: {exc.reason}", file=sys.stderr)
            return 2
        if found is None:
            print(f"error: no stored Telegram bot named {args.bot!r} (python -m admin channels list)", file=sys.stderr)
            return 2
        token, secret = found[0]["bot_token"], found[0].get("webhook_secret")
        base_url = found[1].get("api_base_url") or base_url
    if not token:
        print("error: set SHOPBOT_TELEGRAM_BOT_TOKEN (the token from @BotFather), or give --bot NAME", file=sys.stderr)
        return 2
    sender = TelegramSender(token, base_url)
    try:
        if args.command == "set-webhook":
            if not secret:
                print("error: set SHOPBOT_TELEGRAM_WEBHOOK_SECRET first (1-256 of A-Z a-z 0-9 _ -)", file=sys.stderr)
                return 2
            base = args.url or s.public_url
            if not base or not base.startswith("https://") and "127.0.0.1" not in base:
                print("error: Telegram needs a public https:// URL (--url or SHOPBOT_PUBLIC_URL)", file=sys.stderr)
                return 2
            url = base.rstrip("/") + "/channels/telegram/webhook"
            sender.call(
                "setWebhook",
                url=url,
                secret_token=secret,
                allowed_updates=["message", "edited_message", "callback_query"],
            )
            print(f"webhook set: {url}")
        elif args.command == "delete-webhook":
            sender.call("deleteWebhook")
            print("webhook deleted")
        else:
            info = sender.call("getWebhookInfo")
            print(json.dumps(info, indent=2, ensure_ascii=False))
    except Exception as exc:  # noqa: BLE001 - one plain line for the operator, never the token
        print(f"error: Telegram answered {type(exc).__name__}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
