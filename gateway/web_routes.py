"""Routes of the web channel: sessions, messages over HTTP, the WebSocket."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import Counter

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from channels import web as web_channel
from channels.base import ChannelError, InboundMessage
from shopbot.store import key

from . import limits
from .context import accept, aredis_key, fanout_key, settings_key, store_key
from .schemas import NewWebSession, WebMessage, parse_body

log = logging.getLogger(__name__)
WINDOW_RETRY_S = 30  # what a client over the socket cap is told to wait: others may close by then


async def create_session(request: web.Request) -> web.Response:
    locale = (await parse_body(request, NewWebSession, optional=True)).locale
    sid = web_channel.new_session_id()
    cid = web_channel.conversation_id(sid)
    shopper = web_channel.public_id(sid)
    meta = {"channel": "web", "account": web_channel.ACCOUNT, "chat": shopper, "sender": shopper}
    if locale:
        meta["locale"] = locale
    await asyncio.to_thread(request.app[store_key].create, cid, meta)
    return web.json_response({"session_id": sid, "conversation_id": cid}, status=201)


async def _legacy(app: web.Application, sid: str) -> str | None:
    """The conversation id a session had before ids hid the session (``web:default:<session id>``),
    when that conversation is still in Redis: it keeps its id until it expires, so an upgrade
    does not cut a shopper off their chat."""
    cid = f"{web_channel.NAME}:{web_channel.ACCOUNT}:{sid}"
    return cid if await asyncio.to_thread(app[store_key].exists, cid) else None


async def _carried(app: web.Application, msg: InboundMessage, sid: str) -> InboundMessage:
    if await _legacy(app, sid):
        return dataclasses.replace(msg, sender_id=sid, chat_id=sid)
    return msg


async def post_message(request: web.Request) -> web.Response:
    body = await parse_body(request, WebMessage)
    msg = web_channel.inbound(
        body.session_id, body.text, body.client_message_id, body.locale, body.model_dump(exclude_unset=True)
    )
    try:
        msg = await _carried(request.app, msg, body.session_id)
        await limits.per_session(request.app, msg.conversation_id)
    except limits.Limited as exc:
        return limits.too_many(request, exc, msg.locale)
    mid, duplicate = await accept(request.app, msg)
    return web.json_response(
        {"message_id": mid, "conversation_id": msg.conversation_id, "duplicate": duplicate}, status=202
    )


async def _known_session(request: web.Request) -> tuple[str, str]:
    """The request's session id and its conversation id; 400 or 404 when there is none."""
    try:
        sid = web_channel.check_session_id(request.query.get("session_id"))
    except ChannelError as exc:
        raise web.HTTPBadRequest(text=exc.reason) from None
    cid = web_channel.conversation_id(sid)
    if not await asyncio.to_thread(request.app[store_key].exists, cid):
        cid = await _legacy(request.app, sid) or ""
    if not cid:
        raise web.HTTPNotFound(text="unknown session_id: create one with POST /web/sessions or send a message first")
    return sid, cid


def _after(request: web.Request) -> str | None:
    after = request.query.get("after")
    if after in (None, "", "0"):
        return None
    if not _valid_stream_id(after):
        raise web.HTTPBadRequest(text="after must be a message id, e.g. 1732350000000-0")
    return after


def _valid_stream_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) <= 40


async def get_messages(request: web.Request) -> web.Response:
    _, cid = await _known_session(request)
    after = _after(request)
    entries = await asyncio.to_thread(request.app[store_key].messages_after, cid, after)
    return web.json_response({"conversation_id": cid, "messages": [e.to_json() for e in entries]})


sockets_key = web.AppKey("open_sockets", Counter)


async def websocket(request: web.Request) -> web.StreamResponse:
    sid, cid = await _known_session(request)
    after = _after(request)
    app, ip, lang = request.app, limits.client_ip(request), limits.language(request)
    # Open sockets per client address and per session, on this gateway: each holds memory and
    # a Redis reader, so one address cannot open them until the pool runs dry.
    s, open_sockets = app[settings_key], app[sockets_key]
    caps = (
        (f"ip:{ip}", s.sockets_per_ip, "open chats from your address"),
        (cid, s.sockets_per_session, "open windows"),
    )
    for bucket, cap, what in caps:
        if open_sockets[bucket] >= cap:
            return limits.too_many(request, limits.Limited(WINDOW_RETRY_S, what))
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=web_channel.MAX_TEXT * 8)
    await ws.prepare(request)
    held = (f"ip:{ip}", cid)
    open_sockets.update(held)
    pusher = asyncio.create_task(_push(app, ws, cid, after))
    try:
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            await _on_client_frame(app, ws, sid, ip, lang, frame.data)
    except (TimeoutError, ConnectionResetError):
        pass  # the client stopped answering pings, or went away: it catches up with ?after= on return
    finally:
        open_sockets.subtract(held)
        for bucket in held:
            if open_sockets[bucket] <= 0:
                del open_sockets[bucket]
        pusher.cancel()
        await asyncio.gather(pusher, return_exceptions=True)
    return ws


async def _on_client_frame(
    app: web.Application, ws: web.WebSocketResponse, sid: str, ip: str, lang: str, data: str
) -> None:
    try:
        # Every frame counts against the client's address, as every HTTP request to /web/ does.
        await limits.hit(app, f"ip:{ip}", app[settings_key].rate_ip_per_min, "requests from your address")
    except limits.Limited as exc:
        await ws.send_json(
            {"type": "error", "code": "rate_limited", "reason": exc.reason, "retry_after": exc.retry_after,
             "message": limits.polite(app, lang)}
        )  # fmt: skip
        return
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, RecursionError):
        await ws.send_json({"type": "error", "reason": "frame is not valid JSON"})
        return
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "ping":
        await ws.send_json({"type": "pong"})
        return
    if kind != "message":
        await ws.send_json({"type": "error", "reason": 'frames must be {"type": "message", "text": ...} or ping'})
        return
    try:
        msg = await _carried(app, web_channel.parse_message(body, session_id=sid), sid)
        await limits.per_session(app, msg.conversation_id)
    except ChannelError as exc:
        await ws.send_json({"type": "error", "reason": exc.reason, "client_message_id": body.get("client_message_id")})
        return
    except limits.Limited as exc:
        await ws.send_json(
            {
                "type": "error",
                "code": "rate_limited",
                "reason": exc.reason,
                "retry_after": exc.retry_after,
                "message": limits.polite(app, limits.language_of(msg.locale)),
                "client_message_id": body.get("client_message_id"),
            }
        )
        return
    mid, duplicate = await accept(app, msg)
    await ws.send_json({"type": "ack", "message_id": mid, "client_message_id": msg.id or None, "duplicate": duplicate})


async def _push(app: web.Application, ws: web.WebSocketResponse, cid: str, after: str | None) -> None:
    """Send the conversation's bot, agent and system messages as they are logged (read for all
    of this gateway's sockets by one reader, ``gateway.fanout``)."""
    sub = None
    try:
        sub = await app[fanout_key].subscribe(cid, after)
        while not ws.closed:
            entry = await sub.get()
            if entry is None:  # the gateway is stopping: the widget reconnects elsewhere
                await ws.close(code=1001, message=b"server going away, reconnect")
                return
            if entry.sender == "shopper":
                if await _bot_is_on(app, cid):
                    await ws.send_json({"type": "typing", "from": "bot"})
                continue
            await ws.send_json(entry.to_json())
    except ConnectionResetError:
        pass  # the socket closed under us
    except RedisError:
        log.warning("lost Redis while pushing; closing the socket", extra={"conversation_id": cid})
        await ws.close(code=1011, message=b"backend unavailable, reconnect")
    finally:
        if sub is not None:
            sub.close()


async def _bot_is_on(app: web.Application, cid: str) -> bool:
    raw = await app[aredis_key].get(key(cid, "state"))
    return raw is None or json.loads(raw).get("status", "bot") == "bot"


def setup(app: web.Application) -> None:
    app[sockets_key] = Counter()
    app.router.add_post("/web/sessions", create_session)
    app.router.add_post("/web/messages", post_message)
    app.router.add_get("/web/messages", get_messages)
    app.router.add_get("/web/ws", websocket)
