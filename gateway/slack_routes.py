"""Slack on slack-bolt: ``/channels/slack/events``, ``/interactions``, ``/commands``, and "Add to Slack".

One bolt ``AsyncApp`` per gateway, mounted on the aiohttp app through bolt's
aiohttp adapter (``slack_bolt.adapter.aiohttp``): shoppers write to the bot in
a DM (or mention it); agents work the hand-off cards in the agents' channel
(Claim / Add note / Resolve / Correct reading buttons, the note and correction
modals, replies in a card's thread) and ``/handoff queue|claim|resolve|note``.
The gateway only records and queues (Slack wants an answer within 3 seconds, so
bolt runs the listeners before answering, ``process_before_response``); workers
make the Web API calls.

Before bolt sees a request, ``_verified`` checks it: a valid signature from the
last 5 minutes by one of the configured apps' signing secrets (several apps,
and so several secrets, share these URLs: the one that verifies says which app
it came through), never seen before (a replay), unless Slack says it retries an
event. bolt's own single-secret check is off for that reason; the refusals are
the same (503 with no secret, 401 without headers, 403 wrong, stale, replayed).
bolt's ``authorize`` then gives the workspace's bot token: the one pasted for
it, else, only for requests the "Add to Slack" app signed, its installation
(``gateway.slack_oauth``; that token only ever goes to the URL it was exchanged
at), else the app's (``Channels.slack_auth``).

The desk is for agents only (``agents_only``, bolt listener middleware on every
desk listener): a signed request proves it comes from the app, not from which
workspace (the app may be installed in several) nor who sent it (shoppers talk
to the same app). Desk actions are accepted only

- from the desk's workspace, where the app has a ``team_id`` (the payload's
  team id must be it),
- from the agents' channel,
- from the Slack users the app lists in ``desk_agents``; where it lists none,
  from the members of the agents' channel, as ``conversations.members`` says
  (asked from here, without blocking the event loop, and kept in Redis for
  ``MEMBERS_TTL_S``; when Slack cannot be asked, the action is refused).

Anyone else gets a polite refusal. Every desk action, done or refused, is in
the audit log with the Slack user id (the verified payload's, never a text).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse

from admin.credentials import Channels, SlackApp, SlackAuth
from channels import slack
from channels.base import ChannelError
from handoff.queue import HandoffError
from handoff.slack_desk import (
    CLAIM,
    CORRECT,
    CORRECT_VIEW,
    NOTE,
    NOTE_VIEW,
    RESOLVE,
    correction_modal,
    last_readings,
    note_modal,
    note_text,
    picked_corrections,
)
from shopbot.corrections import CorrectionError

from . import limits, slack_oauth
from .context import (
    accept,
    aredis_key,
    audit_key,
    correction_store,
    credentials_key,
    current_channels,
    enqueue_slack_call,
    enqueue_sync,
    http_key,
    json_error,
    queue_key,
    settings_key,
    store_key,
)

log = logging.getLogger(__name__)
PREFIX = "/channels/slack"
REPLAY_WINDOW_S = 360  # a little longer than the 5 minutes a signature is valid
MEMBERS_TTL_S = 60  # how long the agents' channel's member list is trusted
MEMBERS_TIMEOUT_S = 2.0  # for every page together: Slack wants its answer within 3 seconds
MEMBERS_PAGE = 200  # what Slack recommends per page of conversations.members
MEMBERS_MAX_PAGES = 50
# What the gateway puts in each request's bolt context before dispatching it.
ENTRY, CHANNELS, DESK = "shopbot_app", "shopbot_channels", "shopbot_desk"
bolt_key = web.AppKey("slack_bolt", AsyncApp)
oauth_flow_key = web.AppKey("slack_oauth_flow", object)  # our AsyncOAuthFlow, or None: no "Add to Slack"
TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,40}")


# -- before bolt: signature, replay, shape ---------------------------------------------------


async def _verified(request: web.Request, retries_allowed: bool) -> tuple[bytes, SlackApp, Channels]:
    """The raw body of a request Slack signed, seen for the first time, and the app whose signing
    secret it was signed with (several workspaces may share these URLs); else an HTTP error."""
    body = await request.read()
    chans = await current_channels(request.app)
    app = _signer(chans, request.headers, body)
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
    return body, app, chans


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


def _bolt_body(text: str, content_type: str) -> Any:
    """The body as bolt's ``parse_body`` will read it (JSON when it says so or starts with ``{``; a form's
    ``payload`` field as JSON; else the form's fields), or a ``ValueError`` with the reason it cannot."""
    if content_type == "application/json" or text.startswith("{"):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError("body is not valid JSON (or nested too deeply)") from None
    pairs = parse_qsl(text, keep_blank_values=True)
    names = [k for k, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("a form field is repeated")  # bolt and the checks here would read different ones
    fields = dict(pairs)
    if "payload" in text:  # bolt's own test: the payload field's JSON is the body
        if "payload" not in fields:
            return {}
        try:
            return json.loads(fields["payload"])
        except (json.JSONDecodeError, RecursionError):
            raise ValueError("interaction without a JSON payload field") from None
    return fields


def _typed(obj: dict[str, Any], field: str, kind: type | tuple[type, ...], what: str) -> str | None:
    value = obj.get(field)
    return None if value is None or isinstance(value, kind) else f"{field} must be {what}"


def _malformed(kind: str, body: bytes, content_type: str = "") -> str | None:
    """Why a verified body cannot go to bolt, if it cannot: read as bolt reads it (``_bolt_body``), it must
    be the shape the listeners take (an Events API object, an interaction payload, a command's form)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    try:
        payload = _bolt_body(text, content_type.split(";")[0].strip().lower())
    except ValueError as exc:
        return str(exc)
    if not isinstance(payload, dict):
        return (
            "an Events API request must be a JSON object"
            if kind == "events"
            else "interaction payload must be a JSON object"
        )
    if kind == "events":
        if content_type.split(";")[0].strip().lower() != "application/json" and not text.startswith("{"):
            return "an Events API request must be a JSON object"
        if payload.get("type") == "event_callback" and not isinstance(payload.get("event"), dict):
            return "an event_callback needs an event object"
        auths = payload.get("authorizations")
        if auths is not None and not (isinstance(auths, list) and all(isinstance(a, dict) for a in auths)):
            return "authorizations must be a list of objects"
        return (
            _typed(payload, "type", str, "a string") or _typed(payload, "event", dict, "an object")
            or _typed(payload, "team_id", str, "a string") or _typed(payload, "enterprise_id", str, "a string")
            or _typed(payload, "api_app_id", str, "a string") or _typed(payload, "event_id", str, "a string")
        )  # fmt: skip
    if kind == "interactions":
        if not isinstance(payload.get("type"), str):
            return "interaction payload must be a JSON object with a type"
        for field in ("user", "team", "channel", "view", "message", "container", "enterprise"):
            if (why := _typed(payload, field, dict, "an object")) is not None:
                return why
        actions = payload.get("actions")
        if actions is not None and not (isinstance(actions, list) and all(isinstance(a, dict) for a in actions)):
            return "actions must be a list of objects"
        if payload["type"] == "block_actions" and not actions:
            return "block_actions without actions"
        if payload["type"] == "view_submission" and not isinstance(payload.get("view"), dict):
            return "view_submission without a view"
        return None
    # a slash command: form fields, never JSON
    if text.startswith("{") or "payload" in payload:
        return "a slash command is a form (command, text, user_id, ...), not JSON"
    if not str(payload.get("command", "")).startswith("/"):
        return "a slash command needs a command field starting with /"
    return None


async def slack_request(request: web.Request) -> web.StreamResponse:
    """The three Slack URLs: verified here, then dispatched to the bolt app with the app it came through."""
    kind = request.path.rsplit("/", 1)[-1]
    body, app, chans = await _verified(request, retries_allowed=kind == "events")
    if (why := _malformed(kind, body, request.headers.get("Content-Type", ""))) is not None:
        return json_error(400, why)
    bolt_req = await to_bolt_request(request)
    bolt_req.context[ENTRY] = app
    bolt_req.context[CHANNELS] = chans
    return await to_aiohttp_response(await request.app[bolt_key].async_dispatch(bolt_req))


# -- bolt: authorize, errors ---------------------------------------------------------------------


class WorkspaceToken(AsyncAuthorize):
    """The bot token for the request's workspace, from the credentials in force (no Slack call, no SQL
    query per request): a pasted token bound to that workspace, its "Add to Slack" installation, or the
    app's pasted token (``Channels.slack_token``). None: nothing to answer that workspace with."""

    async def __call__(self, *, context, enterprise_id, team_id, user_id, **_: Any) -> AuthorizeResult | None:
        chans: Channels | None = context.get(CHANNELS)
        if chans is None:
            return None
        auth = chans.slack_auth(team_id, context.get(ENTRY), enterprise_id)
        if auth is None:
            log.warning("a Slack request from a workspace with no bot token (not installed)")
            return None
        inst = auth.installation
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=auth.token,
            bot_user_id=inst.bot_user_id if inst else None,
            bot_id=inst.bot_id if inst else None,
            user_id=user_id,
        )


async def _on_error(error: Exception) -> BoltResponse:
    """bolt's error handler: what nothing here listens for is acknowledged (Slack would only resend it);
    a backend that is down is a 503 (Slack retries events); anything else a 500, logged."""
    if isinstance(error, BoltUnhandledRequestError):
        return BoltResponse(status=200, body="")
    if isinstance(error, RedisError | ConnectionError | TimeoutError | OSError):
        log.error("backend unavailable: %s", type(error).__name__)
        return BoltResponse(status=503, body={"error": "a backend service is unavailable; try again shortly"})
    log.error("a Slack request failed: %s", type(error).__name__, exc_info=error)
    return BoltResponse(status=500, body={"error": "internal error"})


# -- the desk's rule: agents only -----------------------------------------------------------------

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


@dataclasses.dataclass(frozen=True)
class DeskRequest:
    """A desk action as the verified payload states it. ``kind``: how the user is answered
    (``command``: in the response; ``view``: as the modal's errors; ``action``/``event``: ephemerally)."""

    kind: str
    action: str  # claim, resolve, note, reply, queue (or a command's unknown verb)
    user: str
    channel: str | None  # None: no channel to check (a modal opened from a card's button, which was checked)
    team: str | None
    cid: str | None
    thread: str | None = None
    text: str = ""
    words: tuple[str, ...] = ()
    block: str = "note"  # a modal's input block that a refusal is shown on


ACTIONS = {CLAIM: "claim", RESOLVE: "resolve", NOTE: "note", CORRECT: "correct"}


def desk_request(body: dict[str, Any], context: dict[str, Any]) -> DeskRequest:
    if body.get("type") == "event_callback":  # a reply in a card's thread
        event = body["event"]
        return DeskRequest(
            "event", "reply", str(event.get("user") or ""), str(event.get("channel") or ""),
            str(body.get("team_id") or ""), context.get("desk_cid"), str(event.get("thread_ts") or ""),
            context.get("desk_text", ""),
        )  # fmt: skip
    user = (body.get("user") or {}).get("id", "")
    team = (body.get("team") or {}).get("id")  # the workspace it happened in (the user's may differ)
    if body.get("type") == "block_actions":
        action = body["actions"][0]
        return DeskRequest(
            "action", ACTIONS.get(action.get("action_id"), "?"), user, (body.get("channel") or {}).get("id", ""),
            team, str(action.get("value", "")), ((body.get("message") or {}).get("ts")) or None,
        )  # fmt: skip
    if body.get("type") == "view_submission" and body["view"].get("callback_id") == CORRECT_VIEW:
        view = body["view"]
        blocks = view.get("blocks") if isinstance(view.get("blocks"), list) else []
        inputs = [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("type") == "input"]
        block = str(inputs[0]) if inputs and inputs[0] else "note"
        return DeskRequest("view", "correct", user, None, team, str(view.get("private_metadata", "")), block=block)
    if body.get("type") == "view_submission":
        view = body["view"]
        text = (((view.get("state") or {}).get("values") or {}).get("note") or {}).get("text", {}).get("value") or ""
        return DeskRequest("view", "note", user, None, team, str(view.get("private_metadata", "")), text=text)
    # a slash command: plain form fields
    words = tuple(str(body.get("text", "")).split(maxsplit=2))
    verb = words[0].lower() if words else "queue"
    return DeskRequest(
        "command", verb[:20], str(body.get("user_id", "")), str(body.get("channel_id", "")), body.get("team_id"),
        words[1] if len(words) > 1 else None, words=words,
    )  # fmt: skip


def _desk_refusal(app: SlackApp, user: str, channel: str | None, team: str | None = None) -> Refusal | None:
    """Why ``user`` may not work the desk from ``channel`` of workspace ``team``, as far as the app's
    settings say (None: they may, if they are in the agents' channel; see ``_desk_check``)."""
    if app.team_id and team != app.team_id:
        return OTHER_WORKSPACE
    if not app.agent_channel or (channel is not None and channel != app.agent_channel):
        return NOT_DESK_AGENT
    if app.desk_agents and user not in app.desk_agents:
        return NOT_DESK_AGENT
    return None


async def _desk_check(
    web_app: web.Application, chans: Channels, app: SlackApp, user: str, channel: str | None, team: str | None
) -> Refusal | None:
    """``_desk_refusal``, and where the app lists no ``desk_agents``: is ``user`` a member of the agents'
    channel? Asked from Slack (cached); when Slack cannot say, refused."""
    if (refused := _desk_refusal(app, user, channel, team)) is not None:
        return refused
    if app.desk_agents:
        return None
    assert app.agent_channel is not None
    try:
        # The token and the URL it belongs to come together (Channels.slack_auth): an installation's token
        # only for the "Add to Slack" app, and only to the URL it was exchanged at.
        auth = chans.slack_auth(app.team_id or team, app)
        members = await channel_members(web_app, app, app.agent_channel, auth)
    except MembershipUnknown as exc:
        log.warning("desk action refused: the agents' channel's members are unknown (%s)", exc)
        return MEMBERSHIP_UNKNOWN
    return None if user in members else NOT_DESK_AGENT


class MembershipUnknown(Exception):
    """Slack could not be asked who is in a channel (the reason never holds a credential)."""


def members_key(app: SlackApp, channel: str) -> str:
    return f"sb:slack:members:{app.name}:{app.team_id or '-'}:{channel}"


async def channel_members(
    web_app: web.Application, app: SlackApp, channel: str, auth: SlackAuth | None
) -> frozenset[str]:
    """Who is in ``channel``: from Redis if asked in the last ``MEMBERS_TTL_S``, else from Slack."""
    r, key = web_app[aredis_key], members_key(app, channel)
    try:
        cached = await r.get(key)
    except (RedisError, OSError) as exc:
        raise MembershipUnknown(f"Redis: {type(exc).__name__}") from None
    if cached is not None:
        return frozenset(json.loads(cached))
    if auth is None:
        raise MembershipUnknown("no bot token for the desk's workspace")
    try:
        members = await asyncio.wait_for(_fetch_members(web_app[http_key], channel, auth), MEMBERS_TIMEOUT_S)
    except TimeoutError:
        raise MembershipUnknown(f"conversations.members took over {MEMBERS_TIMEOUT_S} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise MembershipUnknown(f"conversations.members failed: {type(exc).__name__}") from None
    try:
        await r.set(key, json.dumps(sorted(members)), ex=MEMBERS_TTL_S)
    except (RedisError, OSError):
        log.warning("could not cache the agents' channel's members; asking Slack again next time")
    return members


async def _fetch_members(http: aiohttp.ClientSession, channel: str, auth: SlackAuth) -> frozenset[str]:
    """Every page of ``conversations.members`` (cursor pagination), with the workspace's bot token, at the
    URL that token belongs to."""
    url = auth.base_url.rstrip("/") + "/conversations.members"
    headers = {"Authorization": f"Bearer {auth.token}"}
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


async def _audit(
    web_app: web.Application, user: str, action: str, target: str | None, outcome: str, detail: dict | None = None
) -> None:
    """A desk action in the audit log: the Slack user id is the actor."""
    await asyncio.to_thread(
        web_app[audit_key].record, f"slack:{user or '?'}", "agent" if outcome == "ok" else None,
        f"desk.{action}", target, outcome, "slack", detail,
    )  # fmt: skip


async def _tell(web_app: web.Application, desk: DeskRequest, text: str) -> None:
    """An ephemeral message to the user where the action happened (a worker posts it)."""
    if not desk.channel:
        return
    params = {"channel": desk.channel, "user": desk.user, "text": text}
    if desk.thread:
        params["thread_ts"] = desk.thread
    await asyncio.to_thread(enqueue_slack_call, web_app, "chat.postEphemeral", **params)


def _answer(desk: DeskRequest, text: str) -> BoltResponse:
    """The HTTP answer to a desk request that did not go through: the command's own reply, the modal's
    errors, or a plain acknowledgement (an action or an event is answered ephemerally)."""
    if desk.kind == "command":
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
    if desk.kind == "view":
        return BoltResponse(status=200, body={"response_action": "errors", "errors": {desk.block: text}})
    return BoltResponse(status=200, body="")


def agents_only(web_app: web.Application):
    """bolt listener middleware for every desk listener: the desk's workspace, the agents' channel, a
    desk agent (finding 1). A refusal is audited, the user is told politely, and the listener never runs."""

    async def agents_only(body: dict[str, Any], context, next) -> BoltResponse | None:
        desk = desk_request(body, context)
        refused = await _desk_check(web_app, context[CHANNELS], context[ENTRY], desk.user, desk.channel, desk.team)
        if refused is None:
            context[DESK] = desk
            await next()
            return None
        await _audit(web_app, desk.user, desk.action, desk.cid, refused.outcome)
        if desk.kind in ("action", "event"):
            await _tell(web_app, desk, refused.text)
        return _answer(desk, refused.text)

    return agents_only


async def _perform(web_app: web.Application, desk: DeskRequest, action: str, text: str = "") -> str | None:
    """Claim, reply, resolve or note as the desk agent the middleware let through; returns the reason it
    could not be done, if any, which the agent is also told ephemerally for actions and events. Audited."""
    cid, agent = desk.cid or "", desk.user
    args = (cid, agent, text) if action in ("reply", "note") else (cid, agent)
    try:
        await asyncio.to_thread(getattr(web_app[queue_key], action), *args)
    except HandoffError as exc:
        await _audit(web_app, agent, action, cid, f"refused: {exc.reason}")
        if desk.kind in ("action", "event"):
            await _tell(web_app, desk, f"Could not {action}: {exc.reason}")
        return exc.reason
    if action == "note":
        card = await asyncio.to_thread(web_app[store_key].desk_card, cid)
        if card:
            await asyncio.to_thread(
                enqueue_slack_call,
                web_app,
                "chat.postMessage",
                channel=card["channel"],
                thread_ts=card["ts"],
                text=note_text(agent, text),
            )
    else:
        await asyncio.to_thread(enqueue_sync, web_app, cid)
    await _audit(web_app, agent, action, cid, "ok")
    log.info("agent action", extra={"conversation_id": cid, "action": action})
    return None


HELP = (
    "`/handoff queue` waiting conversations · `/handoff claim ID` · `/handoff resolve ID` · "
    "`/handoff note ID text` an internal note (never sent to the shopper)"
)


# -- the bolt app ----------------------------------------------------------------------------------


async def _forget_installation(
    web_app: web.Application, app: SlackApp, body: dict[str, Any], action: str, bot_users: list[str] | None
) -> None:
    """Delete this app's installation rows named by an ``app_uninstalled`` / ``tokens_revoked`` event: only
    through the "Add to Slack" app (its signing secret), only rows of its client id and of the event's
    ``api_app_id``; the workspace's row, and for an org-wide install (``is_enterprise_install``, or no team)
    the org's (team ""). Audited."""
    settings = web_app[settings_key]
    team, enterprise = str(body.get("team_id") or ""), str(body.get("enterprise_id") or "")
    auths = body.get("authorizations") or [{}]
    org_wide = bool(auths[0].get("is_enterprise_install")) or not team
    target = team or enterprise or "?"
    if not app.oauth or not settings.slack_client_id:
        await asyncio.to_thread(
            web_app[audit_key].record, "slack:?", None, action, target, "refused: not the Add to Slack app", "slack"
        )  # fmt: skip
        return
    where = [(enterprise, "")] if org_wide and enterprise else []
    if team:
        where.append((enterprise, team))
    gone = 0
    for ent, tm in where:
        gone += await asyncio.to_thread(
            web_app[credentials_key].delete_installation, ent, tm, settings.slack_client_id,
            str(body.get("api_app_id") or "") or None, bot_users,
        )  # fmt: skip
    await asyncio.to_thread(
        web_app[audit_key].record, "slack:?", None, action, target, f"ok: {gone} installation(s) removed", "slack"
    )  # fmt: skip
    log.info("Slack installation removed (%s)", action, extra={"team_id": team})


def build(web_app: web.Application) -> AsyncApp:
    """The bolt app of one gateway: its listeners close over the gateway's resources (looked up per call)."""
    flow = web_app[oauth_flow_key]
    bolt = AsyncApp(
        name="shopbot",
        logger=logging.getLogger("slack_bolt.shopbot"),
        # Record and queue before answering: an acknowledged message is never lost; still well within 3 s.
        process_before_response=True,
        raise_error_for_unhandled_request=True,  # answered by _on_error: acknowledged, nothing done
        request_verification_enabled=False,  # done before dispatch (_verified): several apps, replays, 401/403
        authorize=WorkspaceToken(),
        ignoring_self_events_enabled=False,  # parse_event drops every bot's message, ours included
        oauth_flow=flow,
    )
    if flow is None and bolt.oauth_flow is not None:
        # bolt made its own flow from SLACK_CLIENT_ID / SLACK_CLIENT_SECRET in the environment (with a file
        # installation store that keeps tokens unsealed): never used; only ours serves /install.
        log.warning("SLACK_CLIENT_ID/SLACK_CLIENT_SECRET are ignored: Add to Slack uses SHOPBOT_SLACK_CLIENT_ID")
        bolt._async_oauth_flow = None
        bolt._async_installation_store = None
        bolt._async_tokens_revocation_listeners = None
    bolt.error(_on_error)
    desk_only = agents_only(web_app)

    async def card_reply(body: dict[str, Any], context) -> bool:
        """Matcher: a person's message in a hand-off card's thread in the agents' channel."""
        parsed = slack.parse_event(body, context[ENTRY].agent_channel)
        if parsed.kind != "agent_reply" or parsed.message is None:
            return False
        cid = await asyncio.to_thread(web_app[store_key].conversation_of_thread, parsed.thread_ts)
        context["desk_cid"], context["desk_text"], context["desk_event"] = cid, parsed.message.text, parsed.event_id
        return cid is not None  # a thread that is not a hand-off card: nothing to do

    async def once_per_event(context, next) -> BoltResponse | None:
        """Slack resends an event it thinks we missed: an agent's reply is handled once."""
        fresh = await asyncio.to_thread(
            web_app[store_key].first_time, f"slack-event:{context['desk_event']}", 24 * 3600
        )  # fmt: skip
        if not fresh:
            return BoltResponse(status=200, body={"ok": True, "duplicate": True})
        try:
            await next()
        except BaseException:
            # Not handled after all (a backend failed: Slack gets a 5xx and retries): the retry must not be
            # taken for a duplicate, or the agent's reply is lost.
            await asyncio.to_thread(web_app[store_key].forget_seen, f"slack-event:{context['desk_event']}")
            raise
        return None

    @bolt.event("message", matchers=[card_reply], middleware=[once_per_event, desk_only])
    async def agent_reply(context, ack) -> None:
        try:
            await _perform(web_app, context[DESK], "reply", context[DESK].text)
        except BaseException:
            # Not done (a backend failed: Slack gets a 5xx and retries the event): once_per_event's mark is
            # cleared, or the retry would be taken for a duplicate and the agent's reply lost.
            await asyncio.to_thread(web_app[store_key].forget_seen, f"slack-event:{context['desk_event']}")
            raise
        await ack()

    async def shopper_message(body: dict[str, Any], context, ack) -> None:
        """A DM to the bot or a mention: recorded and queued (the event id is the dedup key: Slack's retries
        collapse); everything else (bots, edits, other channels' chatter) acknowledged and dropped."""
        parsed = slack.parse_event(body, context[ENTRY].agent_channel)
        if parsed.kind == "shopper" and parsed.message is not None:
            await accept(web_app, dataclasses.replace(parsed.message, via=context[ENTRY].name))
        await ack()

    bolt.event("message")(shopper_message)
    bolt.event("app_mention")(shopper_message)

    @bolt.event("app_uninstalled")
    async def uninstalled(body: dict[str, Any], context, ack) -> None:
        """The workspace (or the Enterprise Grid org) removed the app: this app's "Add to Slack" token for it
        is forgotten (the rows of this client id and app id only; other apps' stay)."""
        await _forget_installation(web_app, context[ENTRY], body, "slack.uninstall", None)
        await ack()

    @bolt.event("tokens_revoked")
    async def tokens_revoked(body: dict[str, Any], context, ack) -> None:
        """Bot tokens of the workspace were revoked: this app's installation with that bot user is forgotten."""
        bots = ((body.get("event") or {}).get("tokens") or {}).get("bot") or []
        if isinstance(bots, list) and bots:
            await _forget_installation(web_app, context[ENTRY], body, "slack.tokens_revoked", [str(b) for b in bots])
        await ack()

    @bolt.action(re.compile(f"^{slack.QUICK_REPLY_ACTION}"))
    async def quick_reply(body: dict[str, Any], context, ack) -> None:
        """A shopper's press on a quick-reply button is the message it stands for."""
        if (msg := slack.quick_reply_message(body)) is not None:
            await accept(web_app, dataclasses.replace(msg, via=context[ENTRY].name))
        await ack()

    @bolt.action(CLAIM, middleware=[desk_only])
    async def claim(context, ack) -> None:
        await _perform(web_app, context[DESK], "claim")
        await ack()

    @bolt.action(RESOLVE, middleware=[desk_only])
    async def resolve(context, ack) -> None:
        await _perform(web_app, context[DESK], "resolve")
        await ack()

    @bolt.action(NOTE, middleware=[desk_only])
    async def open_note(body: dict[str, Any], context, ack) -> None:
        # The modal must open within 3 seconds of the click: a worker does it at once.
        if body.get("trigger_id"):
            view = note_modal(context[DESK].cid or "")
            await asyncio.to_thread(enqueue_slack_call, web_app, "views.open", trigger_id=body["trigger_id"], view=view)
        await ack()

    @bolt.view(NOTE_VIEW, middleware=[desk_only])
    async def note_submitted(context, ack) -> None:
        desk: DeskRequest = context[DESK]
        refused = await _perform(web_app, desk, "note", desk.text)
        if refused:
            await ack(response_action="errors", errors={"note": refused})
        else:
            await ack()

    @bolt.action(CORRECT, middleware=[desk_only])
    async def open_correction(body: dict[str, Any], context, ack) -> None:
        """The shopper's last messages with the bot's reading, and selects for the right one."""
        if body.get("trigger_id"):
            cid = context[DESK].cid or ""
            readings = await asyncio.to_thread(last_readings, web_app[store_key], cid)
            view = correction_modal(cid, readings, sorted(correction_store(web_app).intents))
            await asyncio.to_thread(enqueue_slack_call, web_app, "views.open", trigger_id=body["trigger_id"], view=view)
        await ack()

    @bolt.view(CORRECT_VIEW, middleware=[desk_only])
    async def correction_submitted(body: dict[str, Any], context, ack) -> None:
        """Each message the agent picked a label for is a correction by that Slack user, audited."""
        desk: DeskRequest = context[DESK]
        picked = picked_corrections(body["view"])
        if not picked:
            await ack(response_action="errors", errors={desk.block: "Pick an intent or a sentiment to correct"})
            return
        store, errors = correction_store(web_app), {}
        for mid, labels in picked.items():
            detail = {"message_id": mid[:80], **{k: v for k, v in labels.items() if v}}
            try:
                await asyncio.to_thread(store.correct, desk.cid or "", mid, f"slack:{desk.user}", **labels)
            except CorrectionError as exc:
                errors[f"fix:{mid}:intent"] = exc.reason[:150]
                await _audit(web_app, desk.user, "correct", desk.cid, f"refused {exc.status}", detail)
                continue
            await _audit(web_app, desk.user, "correct", desk.cid, "ok", detail)
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

    # Any command name: the command URL is what Slack calls (an installed app may have renamed /handoff).
    @bolt.command(re.compile(r"^/"), middleware=[desk_only])
    async def handoff_command(context, ack) -> None:
        desk: DeskRequest = context[DESK]
        words = desk.words

        async def say(text: str) -> None:
            await ack(response_type="ephemeral", text=text)

        if desk.action == "queue":
            await _audit(web_app, desk.user, "queue", None, "ok")
            items = await asyncio.to_thread(web_app[queue_key].waiting, 0)
            if not items:
                return await say("Nobody is waiting.")
            lines = [
                f"{n}. `{i.conversation_id}` {i.channel}, {i.reason or '-'} (priority {i.priority}), "
                f"waiting {int(i.waiting_s // 60)} min {int(i.waiting_s % 60)} s"
                for n, i in enumerate(items, 1)
            ]
            return await say(f"{len(items)} waiting, first to serve first:\n" + "\n".join(lines))
        verb = desk.action
        if verb in ("claim", "resolve", "note") and len(words) >= 2 and (verb != "note" or len(words) == 3):
            refused = await _perform(web_app, desk, verb, words[2] if verb == "note" else "")
            return await say(f"Could not {verb}: {refused}" if refused else f"Done: {verb} `{words[1]}`.")
        return await say(HELP)

    return bolt


# -- "Add to Slack" --------------------------------------------------------------------------------


async def _oauth(request: web.Request, step: str) -> web.StreamResponse:
    """The install link and Slack's redirect back, through our OAuth flow only (never one bolt would make
    from its own environment variables), limited per client IP. An install starts only with a one-time
    ticket an admin asked for (``POST /admin/api/slack/install-link``); a callback that fails past bolt's
    checks is audited and answered with the "not completed" page."""
    flow = request.app[oauth_flow_key]
    if flow is None:
        return json_error(
            404, "Add to Slack is not set up: set SHOPBOT_SLACK_CLIENT_ID and SHOPBOT_SLACK_CLIENT_SECRET"
        )  # fmt: skip
    try:
        await limits.per_ip(request)
    except limits.Limited as exc:
        return limits.answer_429(exc)
    bolt_req = await to_bolt_request(request)
    if step == "install":
        team = request.query.get("team")
        if team is not None and not TEAM_ID.fullmatch(team):
            return json_error(400, "team must be a workspace id like T0123ABCD")  # it goes into Slack's URL
        admin = await slack_oauth.consume_ticket(request.app[aredis_key], request.query.get("ticket", ""))
        if admin is None:
            await asyncio.to_thread(
                request.app[audit_key].record, "unknown", None, "slack.install", None, "refused: no install ticket",
                limits.client_ip(request),
            )  # fmt: skip
            return json_error(
                403, "an install starts from the admin page (Add to Slack): its link works once, for 10 minutes"
            )  # fmt: skip
        log.info("Slack install started by an admin's link")
        return await to_aiohttp_response(await flow.handle_installation(bolt_req))
    try:
        answer = await flow.handle_callback(bolt_req)
    except Exception as exc:  # noqa: BLE001 - a disconnect, a timeout, an answer without bot_id: audited, 502
        answer = await slack_oauth.exchange_failed(request.app, exc)
    return await to_aiohttp_response(answer)


async def install(request: web.Request) -> web.StreamResponse:
    return await _oauth(request, "install")


async def oauth_redirect(request: web.Request) -> web.StreamResponse:
    return await _oauth(request, "callback")


def setup(app: web.Application) -> None:
    app[oauth_flow_key] = slack_oauth.flow(app, app[settings_key])
    app[bolt_key] = build(app)
    for path in ("events", "interactions", "commands"):
        app.router.add_post(f"{PREFIX}/{path}", slack_request)
    app.router.add_get(slack_oauth.INSTALL_PATH, install)
    app.router.add_get(slack_oauth.REDIRECT_PATH, oauth_redirect)
