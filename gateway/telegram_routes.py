"""Telegram's webhook: ``POST /channels/telegram/webhook``.

Telegram resends an update until it gets a 200, so the answer is quick and
every update is recorded once (its ``update_id`` is the dedup key): a resent
update never produces a second reply. Anything we cannot use still gets a 200,
or Telegram would keep resending it.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from channels import telegram
from channels.base import ChannelError
from shopbot.store import Outgoing

from .context import accept, enqueue_sync, json_error, queue_key, read_json, settings_key, store_key

log = logging.getLogger(__name__)
PATH = "/channels/telegram/webhook"


async def webhook(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    secret = settings.telegram_webhook_secret.get_secret_value() if settings.telegram_webhook_secret else None
    try:
        telegram.check_secret(request.headers.get(telegram.SECRET_HEADER), secret)
        if not settings.telegram_bot_token:
            raise ChannelError("the Telegram channel is not configured (no bot token)", 503)
        account = telegram.account_of(settings.telegram_bot_token.get_secret_value())
        parsed = telegram.parse_update(await read_json(request), account)
    except ChannelError as exc:
        if exc.status >= 500:
            log.error("telegram webhook refused: %s", exc.reason)
        return json_error(exc.status, exc.reason)
    answer = telegram.answer_callback(parsed.callback_query_id) if parsed.callback_query_id else {}
    if parsed.kind == "ignored":
        log.info("telegram update ignored: %s", parsed.reason, extra={"update_id": parsed.update_id})
        return web.json_response(answer)
    msg = parsed.message
    assert msg is not None
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


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, webhook)
