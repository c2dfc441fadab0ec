"""Slack: ``/channels/slack/events``, ``/interactions`` and ``/commands``.

Every request must carry a valid Slack signature from the last 5 minutes; with
no signing secret configured all are refused. The gateway only records and
queues (Slack wants an answer within 3 seconds); workers make the Web API calls.

Shoppers write to the bot in a DM (or mention it); agents work the hand-off
cards in the agents' channel: Claim / Add note / Resolve buttons, replies in a
card's thread go to the shopper, and ``/handoff queue|claim|resolve|note``.

The desk is for agents only: a signed request proves it comes from the app,
not from which workspace (the app may be installed in several) nor who sent it
(shoppers talk to the same app). Desk actions are accepted only

- from the desk's workspace, where the app has a ``team_id`` (the payload's
  team id must be it),
- from the agents' channel,
- from the Slack users the app lists in ``desk_agents``; where it lists none,
  from the members of the agents' channel, as ``conversations.members`` says
  (asked from here, without blocking the event loop, and kept in Redis for
  ``MEMBERS_TTL_S``; when Slack cannot be asked, the action is refused).

Anyone else gets a polite refusal. Every desk action, done or refused, is in
the audit log with the Slack user id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from typing import NamedTuple

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError

from channels import slack
from channels.base import ChannelError
from handoff.queue import HandoffError
from handoff.slack_desk import CLAIM, NOTE, NOTE_VIEW, RESOLVE, note_modal, note_text
from shopbot.credentials import Channels, SlackApp

from .context import (
    accept,
    aredis_key,
    audit_key,
    current_channels,
    enqueue_slack_call,
    enqueue_sync,
    http_key,
    json_error,
    queue_key,
    store_key,
)

log = logging.getLogger(__name__)
PREFIX = "/channels/slack"
REPLAY_WINDOW_S = 360  # a little longer than the 5 minutes a signature is valid
MEMBERS_TTL_S = 60  # how long the agents' channel's member list is trusted
MEMBERS_TIMEOUT_S = 2.0  # for every page together: Slack wants its answer within 3 seconds
MEMBERS_PAGE = 200  # what Slack recommends per page of conversations.members
MEMBERS_MAX_PAGES = 50


async def _verified_body(request: web.Request, retries_allowed: bool = False) -> tuple[bytes, SlackApp]:
    """The raw body of a request Slack signed, seen for the first time, and the app whose signing
    secret it was signed with (several workspaces may share these URLs); else an HTTP error."""
    body = await request.read()
    app = _signer(await current_channels(request.app), request.headers, body)
    # The same signed request twice is a replay, unless it is an event Slack says it
    # is retrying (then the event id makes sure it is handled once). Slack does not
    # retry interactions or commands.
    sig = request.headers.get("X-Slack-Signature", "")
    if not (retries_allowed and "X-Slack-Retry-Num" in request.headers):
        fresh = await asyncio.to_thread(
            request.app[store_key].first_time, "slack-sig:" + hashlib.sha256(sig.encode()).hexdigest(), REPLAY_WINDOW_S
        )
        if not fresh:
            raise _error(403, "replayed request: this signature was already used")
    return body, app


def _signer(chans: Channels, headers, body: bytes) -> SlackApp:
    if not chans.slack:
        raise _error(503, "the Slack channel is not configured (no signing secret)")
    refusal = None
    for app in chans.slack:
        try:
            slack.verify(headers, body, app.signing_secret)
            return app
        except ChannelError as exc:
            if exc.reason != "wrong X-Slack-Signature":
                raise _error(exc.status, exc.reason) from None  # missing or stale: the same for every app
            refusal = exc
    assert refusal is not None
    raise _error(refusal.status, refusal.reason)


def _error(status: int, reason: str) -> web.HTTPException:
    cls = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 503: web.HTTPServiceUnavailable}.get(
        status, web.HTTPBadRequest
    )
    return cls(text=json.dumps({"error": reason}), content_type="application/json")


async def events(request: web.Request) -> web.Response:
    body, app = await _verified_body(request, retries_allowed=True)
    try:
        payload = json.loads(body)
        parsed = slack.parse_event(payload, app.agent_channel)
    except (json.JSONDecodeError, RecursionError):
        return json_error(400, "body is not valid JSON (or nested too deeply)")
    except ChannelError as exc:
        return json_error(exc.status, exc.reason)
    if parsed.kind == "challenge":
        return web.json_response({"challenge": parsed.challenge})
    if parsed.kind == "ignored":
        return web.json_response({"ok": True})
    assert parsed.message is not None
    msg = dataclasses.replace(parsed.message, via=app.name)
    if parsed.kind == "shopper":
        await accept(request.app, msg)  # the event id is the dedup key: Slack's retries collapse
        return web.json_response({"ok": True})
    # An agent's reply in a card's thread.
    store = request.app[store_key]
    if not await asyncio.to_thread(store.first_time, f"slack-event:{parsed.event_id}", 24 * 3600):
        return web.json_response({"ok": True, "duplicate": True})
    cid = await asyncio.to_thread(store.conversation_of_thread, parsed.thread_ts)
    if cid is None:
        return web.json_response({"ok": True})  # a thread that is not a hand-off card
    team = str(payload.get("team_id") or "")
    await _desk_action(request, app, msg.sender_id, msg.chat_id, parsed.thread_ts, "reply", cid, msg.text, team=team)
    return web.json_response({"ok": True})


NOT_AN_AGENT = "Only the shop's agents can work the queue, from the agents' channel."
NOT_CHECKED = (
    "Sorry, I could not check just now that you are in the agents' channel, so I did not do that. "
    "Please try again in a minute."
)


class Refusal(NamedTuple):
    text: str  # what the user is told
    outcome: str  # what the audit log says (40 characters at most)


NOT_DESK_AGENT = Refusal(NOT_AN_AGENT, "refused: not a desk agent")
OTHER_WORKSPACE = Refusal(NOT_AN_AGENT, "refused: another workspace")
MEMBERSHIP_UNKNOWN = Refusal(NOT_CHECKED, "refused: membership not checked")


def _desk_refusal(app: SlackApp, user: str, channel: str | None, team: str | None = None) -> Refusal | None:
    """Why ``user`` may not work the desk from ``channel`` of workspace ``team``, as far as the app's
    settings say (None: they may, if they are in the agents' channel; see ``_desk_check``). ``channel``
    None: no channel to check (a modal opened from a card's button, which was checked)."""
    if app.team_id and team != app.team_id:
        return OTHER_WORKSPACE
    if not app.agent_channel or (channel is not None and channel != app.agent_channel):
        return NOT_DESK_AGENT
    if app.desk_agents and user not in app.desk_agents:
        return NOT_DESK_AGENT
    return None


async def _desk_check(
    request: web.Request, app: SlackApp, user: str, channel: str | None, team: str | None
) -> Refusal | None:
    """``_desk_refusal``, and where the app lists no ``desk_agents``: is ``user`` a member of the agents'
    channel? Asked from Slack (cached); when Slack cannot say, refused."""
    if (refused := _desk_refusal(app, user, channel, team)) is not None:
        return refused
    if app.desk_agents:
        return None
    assert app.agent_channel is not None
    try:
        members = await channel_members(request.app, app, app.agent_channel)
    except MembershipUnknown as exc:
        log.warning("desk action refused: the agents' channel's members are unknown (%s)", exc)
        return MEMBERSHIP_UNKNOWN
    return None if user in members else NOT_DESK_AGENT


class MembershipUnknown(Exception):
    """Slack could not be asked who is in a channel (the reason never holds a credential)."""


def members_key(app: SlackApp, channel: str) -> str:
    return f"sb:slack:members:{app.name}:{app.team_id or '-'}:{channel}"


async def channel_members(web_app: web.Application, app: SlackApp, channel: str) -> frozenset[str]:
    """Who is in ``channel``: from Redis if asked in the last ``MEMBERS_TTL_S``, else from Slack."""
    r, key = web_app[aredis_key], members_key(app, channel)
    try:
        cached = await r.get(key)
    except (RedisError, OSError) as exc:
        raise MembershipUnknown(f"Redis: {type(exc).__name__}") from None
    if cached is not None:
        return frozenset(json.loads(cached))
    try:
        members = await asyncio.wait_for(_fetch_members(web_app[http_key], app, channel), MEMBERS_TIMEOUT_S)
    except TimeoutError:
        raise MembershipUnknown(f"conversations.members took over {MEMBERS_TIMEOUT_S} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise MembershipUnknown(f"conversations.members failed: {type(exc).__name__}") from None
    try:
        await r.set(key, json.dumps(sorted(members)), ex=MEMBERS_TTL_S)
    except (RedisError, OSError):
        log.warning("could not cache the agents' channel's members; asking Slack again next time")
    return members


async def _fetch_members(http: aiohttp.ClientSession, app: SlackApp, channel: str) -> frozenset[str]:
    """Every page of ``conversations.members`` (cursor pagination), with the app's bot token."""
    url = app.api_base_url.rstrip("/") + "/conversations.members"
    headers = {"Authorization": f"Bearer {app.bot_token}"}
    members: set[str] = set()
    cursor = ""
    for _ in range(MEMBERS_MAX_PAGES):
        form = {"channel": channel, "limit": str(MEMBERS_PAGE), **({"cursor": cursor} if cursor else {})}
        async with http.post(url, data=form, headers=headers) as resp:
            if resp.status != 200:
                raise MembershipUnknown(f"conversations.members answered HTTP {resp.status}")
            body = await resp.json(content_type=None)
        if not isinstance(body, dict) or not body.get("ok"):
            error = str(body.get("error") if isinstance(body, dict) else "not an object")[:60]
            raise MembershipUnknown(f"conversations.members: Slack said {error!r}")
        members.update(str(m) for m in body.get("members") or ())
        cursor = str((body.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            return frozenset(members)
    raise MembershipUnknown(f"conversations.members: more than {MEMBERS_MAX_PAGES} pages")


async def _audit(request: web.Request, user: str, action: str, target: str | None, outcome: str) -> None:
    """A desk action in the audit log: the Slack user id is the actor."""
    await asyncio.to_thread(
        request.app[audit_key].record, f"slack:{user or '?'}", "agent" if outcome == "ok" else None,
        f"desk.{action}", target, outcome, "slack",
    )  # fmt: skip


async def _refuse(
    request: web.Request,
    user: str,
    action: str,
    cid: str | None,
    channel: str | None,
    thread: str | None,
    why: Refusal,
) -> None:
    """Audit a refused desk action and tell the user (ephemerally, where there is a channel)."""
    await _audit(request, user, action, cid, why.outcome)
    if channel:
        params = {"channel": channel, "user": user, "text": why.text}
        if thread:
            params["thread_ts"] = thread
        await asyncio.to_thread(enqueue_slack_call, request.app, "chat.postEphemeral", **params)


async def _desk_action(
    request: web.Request,
    app: SlackApp,
    agent: str,
    channel: str | None,
    thread_ts: str | None,
    action: str,
    cid: str,
    text: str = "",
    tell: bool = True,
    team: str | None = None,
) -> str | None:
    """Claim, reply, resolve or note as ``agent``, a desk agent (``_desk_check``) of workspace ``team``;
    returns the refusal, if any, which the agent is also told in an ephemeral message when ``tell``.
    Audited, done or refused."""
    if (refused := await _desk_check(request, app, agent, channel, team)) is not None:
        await _refuse(request, agent, action, cid, channel if tell else None, thread_ts, refused)
        return refused.text
    args = (cid, agent, text) if action in ("reply", "note") else (cid, agent)
    try:
        await asyncio.to_thread(getattr(request.app[queue_key], action), *args)
    except HandoffError as exc:
        await _audit(request, agent, action, cid, f"refused: {exc.reason}")
        if not tell or not channel:
            return exc.reason
        params = {"channel": channel, "user": agent, "text": f"Could not {action}: {exc.reason}"}
        if thread_ts:
            params["thread_ts"] = thread_ts
        await asyncio.to_thread(enqueue_slack_call, request.app, "chat.postEphemeral", **params)
        return exc.reason
    if action == "note":
        card = await asyncio.to_thread(request.app[store_key].desk_card, cid)
        if card:
            await asyncio.to_thread(
                enqueue_slack_call,
                request.app,
                "chat.postMessage",
                channel=card["channel"],
                thread_ts=card["ts"],
                text=note_text(agent, text),
            )
    else:
        await asyncio.to_thread(enqueue_sync, request.app, cid)
    await _audit(request, agent, action, cid, "ok")
    log.info("agent action", extra={"conversation_id": cid, "action": action})
    return None


async def interactions(request: web.Request) -> web.Response:
    body, app = await _verified_body(request)
    try:
        payload = slack.form_payload(body)
    except ChannelError as exc:
        return json_error(exc.status, exc.reason)
    user = (payload.get("user") or {}).get("id", "")
    team = (payload.get("team") or {}).get("id")  # the workspace it happened in (the user's may differ)
    if payload["type"] == "view_submission" and (payload.get("view") or {}).get("callback_id") == NOTE_VIEW:
        view = payload["view"]
        text = (((view.get("state") or {}).get("values") or {}).get("note") or {}).get("text", {}).get("value") or ""
        cid = str(view.get("private_metadata", ""))
        refused = await _desk_action(request, app, user, None, None, "note", cid, text, tell=False, team=team)
        if refused:
            return web.json_response({"response_action": "errors", "errors": {"note": refused}})
        return web.Response(status=200)
    if payload["type"] != "block_actions" or not payload.get("actions"):
        return web.Response(status=200)
    if (msg := slack.quick_reply_message(payload)) is not None:
        await accept(request.app, dataclasses.replace(msg, via=app.name))
        return web.Response(status=200)
    action = payload["actions"][0]
    action_id, cid = action.get("action_id"), str(action.get("value", ""))
    channel = (payload.get("channel") or {}).get("id", "")
    thread = ((payload.get("message") or {}).get("ts")) or None
    if action_id == CLAIM:
        await _desk_action(request, app, user, channel, thread, "claim", cid, team=team)
    elif action_id == RESOLVE:
        await _desk_action(request, app, user, channel, thread, "resolve", cid, team=team)
    elif action_id == NOTE and payload.get("trigger_id"):
        if (refused := await _desk_check(request, app, user, channel, team)) is not None:
            await _refuse(request, user, "note", cid, channel, thread, refused)
            return web.Response(status=200)
        # The modal must open within 3 seconds of the click: a worker does it at once.
        await asyncio.to_thread(
            enqueue_slack_call, request.app, "views.open", trigger_id=payload["trigger_id"], view=note_modal(cid)
        )
    return web.Response(status=200)


HELP = (
    "`/handoff queue` waiting conversations · `/handoff claim ID` · `/handoff resolve ID` · "
    "`/handoff note ID text` an internal note (never sent to the shopper)"
)


async def commands(request: web.Request) -> web.Response:
    body, app = await _verified_body(request)
    f = slack.form_fields(body)
    words = f.get("text", "").split(maxsplit=2)
    verb = words[0].lower() if words else "queue"
    user, channel, team = f.get("user_id", ""), f.get("channel_id", ""), f.get("team_id")

    def say(text: str) -> web.Response:
        return web.json_response({"response_type": "ephemeral", "text": text})

    if (refused := await _desk_check(request, app, user, channel, team)) is not None:
        await _refuse(request, user, verb[:20], words[1] if len(words) > 1 else None, None, None, refused)
        return say(refused.text)

    if verb == "queue":
        await _audit(request, user, "queue", None, "ok")
        items = await asyncio.to_thread(request.app[queue_key].waiting, 0)
        if not items:
            return say("Nobody is waiting.")
        lines = [
            f"{n}. `{i.conversation_id}` {i.channel}, {i.reason or '-'} (priority {i.priority}), "
            f"waiting {int(i.waiting_s // 60)} min {int(i.waiting_s % 60)} s"
            for n, i in enumerate(items, 1)
        ]
        return say(f"{len(items)} waiting, first to serve first:\n" + "\n".join(lines))
    if verb in ("claim", "resolve", "note") and len(words) >= 2 and (verb != "note" or len(words) == 3):
        note = words[2] if verb == "note" else ""
        refused = await _desk_action(request, app, user, channel, None, verb, words[1], note, tell=False, team=team)
        return say(f"Could not {verb}: {refused}" if refused else f"Done: {verb} `{words[1]}`.")
    return say(HELP)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/events", events)
    app.router.add_post(f"{PREFIX}/interactions", interactions)
    app.router.add_post(f"{PREFIX}/commands", commands)
