"""The human queue's HTTP API for agents (the Slack desk uses it too).

Every route needs an agent's (or an admin's) token: ``Authorization: Bearer
<token>``, checked by ``gateway.admin_routes.authorize``; every change is in the
audit log. The agent who claims, replies or resolves is the token's own name
(``python -m admin tokens create NAME --role agent``): a body's
``agent`` field may repeat it and is refused where it names someone else.

Agents also correct the bot's reading of a shopper message (``POST .../messages/{mid}/correction``,
stored by ``shopbot.corrections`` with the token's name as the agent) and list the messages of hand-offs
where the bot did not understand, for labelling (``GET /handoff/api/labelling``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TypeVar

from aiohttp import web

from handoff.queue import HandoffError

from .admin_routes import audit, principal_key, requires
from .context import correction_store, enqueue_sync, json_error, queue_key
from .schemas import AgentAction, AgentReply, Correction, parse_body

Action = TypeVar("Action", bound=AgentAction)

PREFIX = "/handoff/api"


def _cid(request: web.Request) -> str:
    return request.match_info["cid"]


async def _body(request: web.Request, model: type[Action]) -> Action:
    """The body as ``model``; its ``agent``, if any, must be the token's own name."""
    body = await parse_body(request, model, optional=True)
    # The agent is whoever the token belongs to, never a name the body asserts.
    me = request[principal_key].name
    if body.agent is not None and body.agent != me:
        raise web.HTTPForbidden(text=f"agent must be the token's own name ({me!r}) or left out")
    return body


def _agent(request: web.Request) -> str:
    """The agent who claims, replies or resolves: the token's own name."""
    return request[principal_key].name.strip()


async def _run(request: web.Request, action: str, *args: str) -> web.Response:
    cid = _cid(request)
    audit(request, f"handoff.{action}", cid)
    try:
        await asyncio.to_thread(getattr(request.app[queue_key], action), cid, *args)
    except HandoffError as exc:
        return json_error(exc.status, exc.reason)
    # The shopper may be on Telegram or Slack, and the agents' desk shows the change.
    await asyncio.to_thread(enqueue_sync, request.app, cid)
    return web.json_response({"ok": True})


@requires("agent")
async def list_queue(request: web.Request) -> web.Response:
    items = await asyncio.to_thread(request.app[queue_key].waiting)
    return web.json_response({"waiting": [dataclasses.asdict(i) for i in items]})


@requires("agent")
async def get_conversation(request: web.Request) -> web.Response:
    audit(request, "handoff.read", _cid(request))  # staff reading a shopper's messages is on the record
    try:
        item = await asyncio.to_thread(request.app[queue_key].get, _cid(request))
    except HandoffError as exc:
        return json_error(exc.status, exc.reason)
    return web.json_response(dataclasses.asdict(item))


@requires("agent")
async def claim(request: web.Request) -> web.Response:
    await _body(request, AgentAction)
    return await _run(request, "claim", _agent(request))


@requires("agent")
async def reply(request: web.Request) -> web.Response:
    b = await _body(request, AgentReply)
    return await _run(request, "reply", _agent(request), b.text)


@requires("agent")
async def resolve(request: web.Request) -> web.Response:
    await _body(request, AgentAction)
    return await _run(request, "resolve", _agent(request))


@requires("agent")
async def correct(request: web.Request) -> web.Response:
    """The agent's reading of one shopper message: ``{"intent"?, "sentiment"?}``, at least one."""
    cid, mid = _cid(request), request.match_info["mid"]
    audit(request, "handoff.correct", cid, message_id=mid[:80])
    body = await _body(request, Correction)
    intent, sentiment = body.intent, body.sentiment
    labels = {k: str(v)[:80] for k, v in (("intent", intent), ("sentiment", sentiment)) if v is not None}
    audit(request, "handoff.correct", cid, message_id=mid[:80], **labels)  # the history of every correction
    store = correction_store(request.app)
    # CorrectionError (400 bad labels, 404 no such shopper message) is answered by the authorize middleware.
    stored = await asyncio.to_thread(store.correct, cid, mid, request[principal_key].name, intent, sentiment)
    return web.json_response(stored, status=201)


LABELLING_MAX = 200


@requires("agent")
async def labelling(request: web.Request) -> web.Response:
    """Shopper messages of hand-offs where the bot did not understand, not corrected yet, newest first."""
    raw = request.query.get("limit", "50")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= LABELLING_MAX:
        return json_error(400, f"limit must be a whole number from 1 to {LABELLING_MAX}")
    audit(request, "handoff.labelling")  # staff reading shoppers' messages is on the record
    items = await asyncio.to_thread(correction_store(request.app).for_labelling, int(raw))
    return web.json_response({"messages": items})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/queue", list_queue)
    app.router.add_get(f"{PREFIX}/conversations/{{cid}}", get_conversation)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/claim", claim)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/reply", reply)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/resolve", resolve)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/messages/{{mid}}/correction", correct)
    app.router.add_get(f"{PREFIX}/labelling", labelling)
