"""The gateway's OpenAPI 3.1 description, served at ``/openapi.json``.

Written by hand next to the routes (the fuzz test runs against it, so a route
missing here goes untested: ``tests/test_fuzz.py`` checks that every route
is described). The JSON request bodies are not written here: they are the
pydantic models of ``gateway.schemas``, the same the routes validate with, and
their JSON Schema (2020-12, which OpenAPI 3.1 is) goes in as pydantic emits it.
The WebSocket (``/web/ws``) is described in prose only; OpenAPI has no words for it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from . import schemas

JSON = "application/json"
REF = "#/components/schemas/{model}"


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


STR = {"type": "string"}
ERROR = {"description": "refused, with a reason", "content": {JSON: {"schema": _obj({"error": STR}, ["error"])}}}


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request body's schema as the route validates it; its ``$defs`` go to ``components/schemas``."""
    return model.model_json_schema(ref_template=REF)


def _op(summary: str, *, body: dict | type[BaseModel] | None = None, params: list | None = None,
        auth: str | None = None, ok: str = "200", content: str = JSON, tag: str = "") -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "done"}, "4XX": ERROR}}
    if tag:
        op["tags"] = [tag]
    if isinstance(body, type):
        body = body_schema(body)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {content: {"schema": body}}}
    if params:
        op["parameters"] = params
    if auth:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Needs a token with the {auth} role (or higher)."
    return op


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def _query(name: str, schema: dict[str, Any] | None = None, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema or STR}


def _header(name: str, required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": STR}


PLATFORM = {
    "name": "platform",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["telegram", "slack", "web"]},
}  # noqa: E501 fmt: skip
SLACK_HEADERS = [_header("X-Slack-Request-Timestamp"), _header("X-Slack-Signature")]
FORM = "application/x-www-form-urlencoded"
DATE = {"type": "string", "format": "date"}
REPORT_FILTERS = [  # the analytics reports' filters (shopbot/analytics.py); to is included
    _query("from", DATE),
    _query("to", DATE),
    _query("channel", {"type": "string", "enum": ["web", "telegram", "slack"]}),
    _query("language", {"type": "string", "enum": ["en", "zh"]}),
    _query("format", {"type": "string", "enum": ["json", "csv"]}),
]


def _readyz() -> dict[str, Any]:
    op = _op("Redis and a worker for every queue are there", tag="health")
    op["responses"]["503"] = {"description": "not ready: no Redis, or a queue without a live worker (the reason)"}
    return op


def _metrics() -> dict[str, Any]:
    op = _op("Prometheus metrics, text format (docs/metrics.md)", tag="health")
    op["description"] = "Open unless SHOPBOT_METRICS_TOKEN is set; then it needs Authorization: Bearer <that token>."
    op["responses"]["200"] = {"description": "the metrics", "content": {"text/plain": {"schema": STR}}}
    op["security"] = [{}, {"bearer": []}]  # the token is optional
    return op


def describe() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("the process is up", tag="health")},
        "/readyz": {"get": _readyz()},
        "/metrics": {"get": _metrics()},
        "/web/sessions": {
            "post": _op(
                "start a web chat session",
                body=schemas.NewWebSession,
                ok="201",
                tag="web",
            )
        },
        "/web/messages": {
            "post": _op(
                "send a shopper message (202; 429 with Retry-After past the rate limits)",
                body=schemas.WebMessage,
                ok="202",
                tag="web",
            ),
            "get": _op(
                "the session's messages, after a message id",
                params=[_query("session_id", required=True), _query("after")],
                tag="web",
            ),
        },
        "/channels/telegram/webhook": {
            "post": _op(
                "Telegram's webhook (an Update); the secret token header says which bot",
                body={"type": "object"},
                params=[_header("X-Telegram-Bot-Api-Secret-Token")],
                tag="platforms",
            )
        },
        "/channels/slack/events": {
            "post": _op("Slack Events API", body={"type": "object"}, params=SLACK_HEADERS, tag="platforms")
        },
        "/channels/slack/interactions": {
            "post": _op(
                "Slack interactivity", body=_obj({"payload": STR}), params=SLACK_HEADERS, content=FORM, tag="platforms"
            )
        },
        "/channels/slack/commands": {
            "post": _op(
                "the /handoff slash command",
                body=_obj({"text": STR, "user_id": STR, "channel_id": STR}),
                params=SLACK_HEADERS,
                content=FORM,
                tag="platforms",
            )
        },
        "/channels/slack/install": {
            "get": _op(
                "\"Add to Slack\": with an admin's one-time ticket, a 302 to Slack's authorize page with a "
                "one-time state (403 without a valid ticket, 404 when not set up)",
                params=[_query("ticket"), _query("team")],
                ok="302",
                tag="platforms",
            )
        },
        "/channels/slack/oauth_redirect": {
            "get": _op(
                "where Slack sends the installing admin back: the code is exchanged, the workspace stored (a page)",
                params=[_query("code"), _query("state"), _query("error")],
                content="text/html",
                tag="platforms",
            )
        },
        "/admin/api/me": {"get": _op("who the token belongs to", auth="viewer", tag="admin")},
        "/admin/api/channels": {
            "get": _op("channel credentials, secrets as their last 4 characters", auth="admin", tag="admin")
        },  # fmt: skip
        "/admin/api/channels/{platform}/{name}": {
            "put": _op(
                "add or update an entry (fields left out keep their value)",
                body=schemas.ChannelFields,
                params=[PLATFORM, _path("name")],
                auth="admin",
                tag="admin",
            ),
            "delete": _op("remove an entry", params=[PLATFORM, _path("name")], auth="admin", tag="admin"),
        },
        "/admin/api/channels/{platform}/{name}/test": {
            "post": _op(
                "ask the platform whether the entry works (getMe, auth.test; a Slack app without team_id learns it)",
                params=[PLATFORM, _path("name")],
                auth="admin",
                tag="admin",
            )
        },
        "/admin/api/slack/install-link": {
            "post": _op(
                'a one-time "Add to Slack" link (10 minutes): only an admin starts an install (audited)',
                auth="admin",
                tag="admin",
            )
        },
        "/admin/api/tokens": {
            "get": _op("API tokens (never the tokens themselves)", auth="admin", tag="admin"),
            "post": _op(
                "make a token; it is in this answer only",
                body=schemas.NewToken,
                ok="201",
                auth="admin",
                tag="admin",
            ),
        },
        "/admin/api/tokens/{id}": {"delete": _op("revoke a token", params=[_path("id")], auth="admin", tag="admin")},
        "/admin/api/audit": {
            "get": _op(
                "the audit log, newest first",
                params=[_query("limit", {"type": "integer"}), _query("before", {"type": "integer"})],
                auth="admin",
                tag="admin",
            )
        },
        "/admin/api/policies": {"get": _op("the dialogue policies in force (YAML)", auth="admin", tag="admin")},
        "/admin/api/analytics": {"get": _op("conversation counts, intents, mood", auth="viewer", tag="admin")},
        "/admin/api/analytics/outcomes": {
            "get": _op(
                "automation, answer and hand-off rates, CSAT: per day or week, in total, per channel and language",
                params=[_query("period", {"type": "string", "enum": ["day", "week"]}), *REPORT_FILTERS],
                auth="viewer",
                tag="admin",
            )
        },
        "/admin/api/analytics/intents": {
            "get": _op(
                "per intent: volume, answered, hand-offs, did that help",
                params=REPORT_FILTERS,
                auth="viewer",
                tag="admin",
            )
        },
        "/admin/api/analytics/faq": {
            "get": _op(
                "per FAQ entry: volume, did that help, hand-offs after it",
                params=REPORT_FILTERS,
                auth="viewer",
                tag="admin",
            )
        },
        "/admin/api/analytics/unanswered": {
            "get": _op(
                "the unanswered questions grouped by meaning (computed by the NLU worker; 'computing' at first)",
                params=[_query("days", {"type": "number", "minimum": 1, "maximum": 365})],
                auth="viewer",
                tag="admin",
            )
        },
        "/admin/api/faq": {
            "post": _op(
                "add an entry to the shop's FAQ (from a group of unanswered questions)",
                body=schemas.NewFaqEntry,
                auth="admin",
                ok="201",
                tag="admin",
            )
        },
        "/admin/api/conversations/{cid}/export": {
            "get": _op("a transcript, personal data masked", params=[_path("cid")], auth="agent", tag="admin")
        },
        "/admin/api/shoppers/forget": {
            "post": _op(
                "delete everything about one shopper",
                body=schemas.ForgetShopper,
                auth="admin",
                tag="admin",
            )
        },
        "/handoff/api/queue": {"get": _op("conversations waiting for a person", auth="agent", tag="handoff")},
        "/handoff/api/conversations/{cid}": {
            "get": _op("one handed-off conversation", params=[_path("cid")], auth="agent", tag="handoff")
        },
    }
    agent_bodies = (("claim", schemas.AgentAction), ("reply", schemas.AgentReply), ("resolve", schemas.AgentAction))
    for verb, body in agent_bodies:
        paths[f"/handoff/api/conversations/{{cid}}/{verb}"] = {
            "post": _op(f"{verb} a conversation", body=body, params=[_path("cid")], auth="agent", tag="handoff")
        }
    paths["/handoff/api/conversations/{cid}/messages/{mid}/correction"] = {
        "post": _op(
            "correct the bot's reading of a shopper message (intent, sentiment); the agent is the token's name",
            body=schemas.Correction,
            params=[_path("cid"), _path("mid")],
            auth="agent",
            tag="handoff",
            ok="201",
        )
    }
    paths["/handoff/api/labelling"] = {
        "get": _op(
            "shopper messages of hand-offs where the bot did not understand, not corrected yet, newest first",
            params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 200})],
            auth="agent",
            tag="handoff",
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shopbot gateway",
            "version": "1",
            "description": "Shoppers' channels, the human queue and the admin API. The web chat's socket is "
            "GET /web/ws?session_id=...&after=... (JSON frames; see docs/web.md).",
        },
        "paths": paths,
        "components": {
            "schemas": _hoist_defs(paths),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _hoist_defs(paths: dict[str, Any]) -> dict[str, Any]:
    """The models' shared parts (pydantic's ``$defs``), moved to where their refs (``REF``) point."""
    found: dict[str, Any] = {}
    for ops in paths.values():
        for op in ops.values():
            for media in op.get("requestBody", {}).get("content", {}).values():
                found.update(media["schema"].pop("$defs", {}))
    return found


async def openapi_json(_request: web.Request) -> web.Response:
    return web.json_response(describe())


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
