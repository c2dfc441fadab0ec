"""The admin API (``/admin/api/...``), its page (``/admin``), and who may call what.

Every ``/admin/api`` and ``/handoff/api`` route needs ``Authorization: Bearer
<token>`` (``admin.access``): 401 without a valid token, 403 when its role is
too low. What the stores refuse (``shopbot.errors.Refused``) is answered here as a 4xx
with its reason. Every change, and every read of personal data (an export), is written
to the audit log with who, what, when and from where; refusals for a too-low
role too. Wrong tokens are counted per client IP and answered 429 past
``SHOPBOT_RATE_AUTH_FAILURES_PER_MIN``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from admin import privacy
from admin.access import ROLES, Principal
from admin.credentials import SPECS, learns_team
from channels import web as web_channel
from channels.checks import check_platform
from shopbot import analytics as reports
from shopbot.errors import Refused
from shopbot.transcripts import messages

from . import limits
from .context import (
    aredis_key,
    audit_key,
    credentials_key,
    engine_key,
    json_error,
    queue_key,
    settings_key,
    store_key,
    tokens_key,
)
from .schemas import ChannelFields, ForgetShopper, NewToken, parse_body

log = logging.getLogger(__name__)
PREFIX = "/admin/api"
PROTECTED = (PREFIX + "/", "/handoff/api/")
STATIC = Path(__file__).with_name("static")
principal_key = "principal"


def requires(role: str):
    """Mark a handler with the lowest role that may call it."""
    assert role in ROLES

    def mark(handler):
        handler.required_role = role
        return handler

    return mark


def audit(request: web.Request, action: str, target: str | None = None, **detail: Any) -> None:
    """Say what this request does, for the audit log (written when the response is known)."""
    request["audit"] = (action, target, detail or None)


def _source(request: web.Request) -> str:
    agent = request.headers.get("User-Agent", "")[:80]
    return f"{limits.client_ip(request)} {agent}".strip()


async def _record(request: web.Request, who: Principal | None, status: int) -> None:
    action, target, detail = request.get("audit") or (f"{request.method} {_route(request)}", None, None)
    outcome = "ok" if status < 400 else f"refused {status}"
    await asyncio.to_thread(
        request.app[audit_key].record,
        who.actor if who else "unknown",
        who.role if who else None,
        action,
        target,
        outcome,
        _source(request),
        detail,
    )


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else request.path


@web.middleware
async def authorize(request: web.Request, handler) -> web.StreamResponse:
    if not request.path.startswith(PROTECTED):
        return await handler(request)
    required = getattr(request.match_info.handler, "required_role", None)
    if required is None:  # an unknown path or method: aiohttp's own 404 / 405
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return json_error(401, "send Authorization: Bearer <token> (python -m admin tokens create)")
    who = await asyncio.to_thread(request.app[tokens_key].verify, token.strip())
    if who is None:
        try:
            s = request.app[settings_key]
            await limits.hit(
                request.app, f"auth:{limits.client_ip(request)}", s.rate_auth_failures_per_min, "wrong tokens"
            )
        except limits.Limited as exc:
            return limits.answer_429(exc)
        return json_error(401, "unknown or revoked token")
    request[principal_key] = who
    if not who.may(required):
        await _record(request, who, 403)
        return json_error(403, f"this needs the {required} role; your token has {who.role}")
    try:
        resp = await handler(request)
    except Refused as exc:  # what the stores refuse (CredentialError, AccessError, PrivacyError) is a 4xx
        resp = json_error(exc.status, exc.reason)
    except web.HTTPException as exc:
        if request.method != "GET" or "audit" in request:
            await _record(request, who, exc.status)
        raise
    if request.method != "GET" or "audit" in request:
        await _record(request, who, resp.status)
    return resp


def _who(request: web.Request) -> Principal:
    return request[principal_key]


# -- who am I -----------------------------------------------------------------------------


@requires("viewer")
async def me(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(_who(request)))


# -- channels -----------------------------------------------------------------------------


def _platform(request: web.Request) -> str:
    platform = request.match_info["platform"]
    if platform not in SPECS:
        raise web.HTTPNotFound(text=f"unknown platform {platform!r}: one of {', '.join(SPECS)}")
    return platform


@requires("admin")
async def list_channels(request: web.Request) -> web.Response:
    return web.json_response({"channels": await asyncio.to_thread(request.app[credentials_key].listing)})


@requires("admin")
async def set_channel(request: web.Request) -> web.Response:
    platform, name = _platform(request), request.match_info["name"]
    body = (await parse_body(request, ChannelFields)).model_dump(exclude_unset=True)
    audit(request, "channel.set", f"{platform}/{name}", fields=sorted(body))
    creds, actor = request.app[credentials_key], _who(request).actor
    entry = await asyncio.to_thread(creds.set, platform, name, body, actor)
    if learns_team(platform, body, entry):
        # The desk's workspace, from auth.test (best effort: the entry is saved either way).
        relearn = bool(body.get("bot_token"))
        checked = await asyncio.to_thread(creds.check, platform, name, actor, check_platform, relearn)
        entry["checked"] = checked
        if checked and checked.get("team_id"):
            entry["team_id"] = checked["team_id"]
            audit(request, "channel.set", f"{platform}/{name}", fields=sorted(body), team_id=checked["team_id"])
    return web.json_response(entry, status=201 if entry["created"] else 200)


@requires("admin")
async def remove_channel(request: web.Request) -> web.Response:
    platform, name = _platform(request), request.match_info["name"]
    audit(request, "channel.remove", f"{platform}/{name}")
    if not await asyncio.to_thread(request.app[credentials_key].remove, platform, name):
        return json_error(404, f"no {platform} entry named {name!r}")
    return web.json_response({"ok": True})


@requires("admin")
async def test_channel(request: web.Request) -> web.Response:
    platform, name = _platform(request), request.match_info["name"]
    audit(request, "channel.test", f"{platform}/{name}")
    store, actor = request.app[credentials_key], _who(request).actor
    result = await asyncio.to_thread(store.check, platform, name, actor, check_platform)
    if result is None:
        return json_error(404, f"no {platform} entry named {name!r}")
    extra = {"team_id": result["team_id"]} if result.get("team_id") else {}
    audit(request, "channel.test", f"{platform}/{name}", ok=result["ok"], **extra)
    return web.json_response(result)


@requires("admin")
async def slack_install_link(request: web.Request) -> web.Response:
    """A one-time "Add to Slack" link (10 minutes): ``/channels/slack/install`` starts an install only with
    the ticket in it, so only an admin starts one (audited here, with the admin's name)."""
    from . import slack_oauth, slack_routes

    audit(request, "slack.install_link")
    if request.app[slack_routes.oauth_flow_key] is None:
        return json_error(
            404, "Add to Slack is not set up: set SHOPBOT_SLACK_CLIENT_ID and SHOPBOT_SLACK_CLIENT_SECRET"
        )
    ticket = await slack_oauth.issue_ticket(request.app[aredis_key], _who(request).actor)
    s = request.app[settings_key]
    base = (s.public_url or f"http://{s.host}:{s.port}").rstrip("/")
    return web.json_response(
        {"url": f"{base}{slack_oauth.INSTALL_PATH}?ticket={ticket}", "expires_in_s": slack_oauth.STATE_TTL_S}
    )


# -- tokens -------------------------------------------------------------------------------


@requires("admin")
async def list_tokens(request: web.Request) -> web.Response:
    return web.json_response({"tokens": await asyncio.to_thread(request.app[tokens_key].listing)})


@requires("admin")
async def create_token(request: web.Request) -> web.Response:
    audit(request, "token.create")
    body = await parse_body(request, NewToken)
    name, role = body.name, body.role
    audit(request, "token.create", name[:120], role=role)
    entry, token = await asyncio.to_thread(request.app[tokens_key].create, name, role, _who(request).actor)
    request["audit"] = ("token.create", entry["id"], {"name": entry["name"], "role": entry["role"]})
    return web.json_response({**entry, "token": token}, status=201)


@requires("admin")
async def revoke_token(request: web.Request) -> web.Response:
    tid = request.match_info["id"]
    audit(request, "token.revoke", tid)
    return web.json_response(await asyncio.to_thread(request.app[tokens_key].revoke, tid))


# -- audit, policies, analytics -----------------------------------------------------------


def _int_query(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number from {lo} to {hi}")
    return int(raw)


@requires("admin")
async def audit_entries(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", 100, 1, 1000)
    before = _int_query(request, "before", None, 1, 2**62)
    entries = await asyncio.to_thread(request.app[audit_key].entries, limit, before)
    return web.json_response({"entries": entries})


@requires("admin")
async def policies(request: web.Request) -> web.Response:
    from dialogue.policy import DEFAULT_FILE

    path = request.app[settings_key].policies_file or DEFAULT_FILE
    return web.Response(text=Path(path).read_text(encoding="utf-8"), content_type="application/yaml")


def _analytics(app: web.Application) -> dict[str, Any]:
    m = messages.c
    with app[engine_key].connect() as conn:
        by_channel = conn.execute(
            select(m.channel, func.count(func.distinct(m.conversation_id)), func.count()).group_by(m.channel)
        ).all()
        by_sender = dict(conn.execute(select(m.sender, func.count()).group_by(m.sender)).all())
        intents = conn.execute(
            select(m.intent, func.count())
            .where(m.sender == "shopper", m.intent.is_not(None))
            .group_by(m.intent)
            .order_by(func.count().desc())
            .limit(10)
        ).all()
        mood = conn.execute(select(func.avg(m.sentiment_score)).where(m.sender == "shopper")).scalar()
    return {
        "conversations": sum(c for _, c, _ in by_channel),
        "by_channel": {ch: {"conversations": c, "messages": n} for ch, c, n in by_channel},
        "messages_by_sender": by_sender,
        "top_intents": [{"intent": i, "messages": n} for i, n in intents],
        "mean_sentiment": round(mood, 3) if mood is not None else None,
        "waiting_for_agent": len(app[queue_key].waiting(last_messages=0)),
    }


@requires("viewer")
async def analytics(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_analytics, request.app))


async def _report(request: web.Request, name: str) -> web.Response:
    """One of the analytics reports (``shopbot.analytics``) with the query's filters, as JSON or CSV."""
    q = request.query
    try:
        filters = reports.Filters.parse(q)
        period = reports.period_of(q) if name == "outcomes" else None
    except reports.BadQuery as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    fmt = q.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise web.HTTPBadRequest(text="format must be json or csv")
    engine = request.app[engine_key]
    if name == "outcomes":
        report = await asyncio.to_thread(reports.outcomes, engine, filters, period)
    else:
        report = await asyncio.to_thread(getattr(reports, name), engine, filters)
    if fmt == "json":
        return web.json_response(report)
    filename = f"shopbot-{name}{'-' + period if period else ''}.csv"
    return web.Response(
        text=reports.to_csv(report),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@requires("viewer")
async def analytics_outcomes(request: web.Request) -> web.Response:
    return await _report(request, "outcomes")


@requires("viewer")
async def analytics_intents(request: web.Request) -> web.Response:
    return await _report(request, "intents")


@requires("viewer")
async def analytics_faq(request: web.Request) -> web.Response:
    return await _report(request, "faq")


# -- shoppers' data -----------------------------------------------------------------------


@requires("agent")
async def export_conversation(request: web.Request) -> web.Response:
    cid = request.match_info["cid"]
    audit(request, "conversation.export", cid)
    return web.json_response(
        await asyncio.to_thread(privacy.export, request.app[store_key], request.app[engine_key], cid)
    )


@requires("admin")
async def forget_shopper(request: web.Request) -> web.Response:
    body = await parse_body(request, ForgetShopper)
    store, engine = request.app[store_key], request.app[engine_key]
    if body.conversation_id:
        cids = [body.conversation_id]
    elif body.channel is not None and body.user is not None:
        ids = web_channel.shopper_ids(body.channel, body.user)
        cids = await asyncio.to_thread(privacy.conversations_of, store, engine, body.channel, *ids)
    else:
        return json_error(400, 'send {"channel": "telegram", "user": "<user id>"} or {"conversation_id": ...}')
    audit(request, "shopper.forget", None, conversations=len(cids))
    counts = await asyncio.to_thread(privacy.forget, store, engine, cids)
    return web.json_response({"ok": True, **counts})


# The page runs only this gateway's own scripts (admin.js, the vendored Chart.js under static/vendor/) and talks
# only to this gateway; its one inline part is its <style>.
ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def admin_page(_request: web.Request) -> web.FileResponse:
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": ADMIN_CSP}
    return web.FileResponse(STATIC / "admin.html", headers=headers)


def setup(app: web.Application) -> None:
    app.middlewares.append(authorize)
    r = app.router
    r.add_get("/admin", admin_page)
    r.add_get(f"{PREFIX}/me", me)
    r.add_get(f"{PREFIX}/channels", list_channels)
    r.add_put(f"{PREFIX}/channels/{{platform}}/{{name}}", set_channel)
    r.add_delete(f"{PREFIX}/channels/{{platform}}/{{name}}", remove_channel)
    r.add_post(f"{PREFIX}/channels/{{platform}}/{{name}}/test", test_channel)
    r.add_post(f"{PREFIX}/slack/install-link", slack_install_link)
    r.add_get(f"{PREFIX}/tokens", list_tokens)
    r.add_post(f"{PREFIX}/tokens", create_token)
    r.add_delete(f"{PREFIX}/tokens/{{id}}", revoke_token)
    r.add_get(f"{PREFIX}/audit", audit_entries)
    r.add_get(f"{PREFIX}/policies", policies)
    r.add_get(f"{PREFIX}/analytics", analytics)
    r.add_get(f"{PREFIX}/analytics/outcomes", analytics_outcomes)
    r.add_get(f"{PREFIX}/analytics/intents", analytics_intents)
    r.add_get(f"{PREFIX}/analytics/faq", analytics_faq)
    r.add_get(f"{PREFIX}/conversations/{{cid}}/export", export_conversation)
    r.add_post(f"{PREFIX}/shoppers/forget", forget_shopper)
