"""The human queue's HTTP API for agents (the Slack desk uses it too).

Every route needs an agent's (or an admin's) token: ``Authorization: Bearer
<token>``, checked by ``gateway.admin_routes.authorize``; every change is in the
audit log. The agent who claims, replies or resolves is the token's own name
(``python -m gateway.admin tokens create NAME --role agent``): a body's
``agent`` field may repeat it and is refused where it names someone else.
"""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from handoff.queue import HandoffError

from .admin_routes import audit, principal_key, requires
from .context import enqueue_sync, json_error, queue_key, read_json

PREFIX = "/handoff/api"


def _cid(request: web.Request) -> str:
    return request.match_info["cid"]


async def _body(request: web.Request, *fields: str) -> dict[str, str]:
    body = await read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    # The agent is whoever the token belongs to, never a name the body asserts.
    me = request[principal_key].name
    said = body.get("agent")
    if said is not None and said != me:
        raise web.HTTPForbidden(text=f"agent must be the token's own name ({me!r}) or left out")
    body = {**body, "agent": me} if "agent" in fields else body
    out = {}
    for name in fields:
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise web.HTTPBadRequest(text=f"{name} is required (a non-empty string)")
        out[name] = value.strip()
    if "text" in out and len(out["text"]) > 4000:
        raise web.HTTPRequestEntityTooLarge(
            max_size=4000, actual_size=len(out["text"]), text="text is over 4000 characters"
        )
    return out


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
    b = await _body(request, "agent")
    return await _run(request, "claim", b["agent"])


@requires("agent")
async def reply(request: web.Request) -> web.Response:
    b = await _body(request, "agent", "text")
    return await _run(request, "reply", b["agent"], b["text"])


@requires("agent")
async def resolve(request: web.Request) -> web.Response:
    b = await _body(request, "agent")
    return await _run(request, "resolve", b["agent"])


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/queue", list_queue)
    app.router.add_get(f"{PREFIX}/conversations/{{cid}}", get_conversation)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/claim", claim)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/reply", reply)
    app.router.add_post(f"{PREFIX}/conversations/{{cid}}/resolve", resolve)
