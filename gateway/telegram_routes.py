"""Telegram's webhook: ``POST /channels/telegram/webhook``.

Telegram resends an update until it gets a 200, so the answer is quick and
every update is recorded once (its ``update_id`` is the dedup key): a resent
update never produces a second reply. Anything we cannot use still gets a 200,
or Telegram would keep resending it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web

from admin.credentials import Channels, TelegramBot
from channels import telegram
from channels.base import ChannelError
from shopbot.store import Outgoing

from .context import accept, current_channels, enqueue_sync, json_error, queue_key, read_json, store_key

log = logging.getLogger(__name__)
PATH = "/channels/telegram/webhook"


async def webhook(request: web.Request) -> web.Response:
    """Several bots may share this URL: the secret token Telegram sends says which one is calling."""
    chans = await current_channels(request.app)
    try:
        bot = _bot_of(chans, request.headers.get(telegram.SECRET_HEADER))
        account = telegram.account_of(bot.token)
        parsed = telegram.parse_update(await read_json(request), account)
    except ChannelError as exc:
        if exc.status >= 500:
            log.error("telegram webhook refused: %s", exc.reason)
        return json_error(exc.status, exc.reason)
    answer = telegram.answer_callback(parsed.callback_query_id) if parsed.callback_query_id else {}
    if parsed.kind == "ignored":
        log.info("telegram update ignored: %s", parsed.reason, extra={"update_id": parsed.update_id})
        return web.json_response(answer)
    assert parsed.message is not None
    msg = dataclasses.replace(parsed.message, via=bot.name)
    cid = msg.conversation_id
    if parsed.kind == "message":
        await accept(request.app, msg)
        return web.json_response(answer)
    # /start and non-text: answered here, from the policies' texts, once per update.
    policy = request.app[queue_key].policy  # loaded once with the app
    lang = msg.locale or "en"
    if parsed.kind == "start":
        reply = Outgoing("bot", policy.message("greeting", lang), policy.quick_replies(lang))
    else:
        reply = Outgoing("bot", policy.message("text_only", lang))
    store = request.app[store_key]
    _mid, duplicate = await asyncio.to_thread(store.record_reply, cid, msg.id, reply, msg.meta())
    if not duplicate:
        await asyncio.to_thread(enqueue_sync, request.app, cid)
    return web.json_response(answer)


def _bot_of(chans: Channels, header: str | None) -> TelegramBot:
    if not chans.telegram:
        raise ChannelError("the Telegram channel is not configured (no bot token)", 503)
    if not any(b.webhook_secret for b in chans.telegram):
        raise ChannelError("the Telegram channel is not configured (no webhook secret)", 503)
    if not header:
        raise ChannelError(f"missing {telegram.SECRET_HEADER} header", 401)
    bot = chans.telegram_by_secret(header)
    if bot is None:
        raise ChannelError(f"wrong {telegram.SECRET_HEADER}", 403)
    return bot


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, webhook)
