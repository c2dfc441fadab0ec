"""Local stand-ins for the Telegram Bot API and the Slack Web API, for the tests.

They speak the real wire protocol at the real paths (``/bot<token>/<method>``,
``/api/<method>``): form or JSON bodies in, the platforms' JSON envelopes out,
their error shapes, and 429s with ``retry_after`` / ``Retry-After`` when told
to. The product is pointed at them with SHOPBOT_TELEGRAM_API_BASE_URL and
SHOPBOT_SLACK_API_BASE_URL; they record every call for the tests to inspect.
Also here: signing Slack requests the way Slack does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int
    result: dict[str, Any] = field(default_factory=dict)  # what the fake answered (Slack: ts)
    token: str = ""  # the credential it was called with


@dataclass
class FakePlatform:
    calls: list[Call] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)  # method -> how many 429s to give
    retry_after: int = 1

    def of(self, method: str, ok_only: bool = True) -> list[Call]:
        return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    async def wait_for(self, method: str, pred=lambda c: True, timeout: float = 60) -> Call:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in self.of(method):
                if pred(c):
                    return c
            await asyncio.sleep(0.05)
        seen = [(c.method, str(c.params)[:200]) for c in self.calls[-10:]]
        raise AssertionError(f"no {method} call matching within {timeout} s; last calls: {seen}")

    def _rate_limited(self, method: str) -> bool:
        if self.fail_next.get(method, 0) > 0:
            self.fail_next[method] -= 1
            return True
        return False


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        raw = await request.read()
        return json.loads(raw) if raw.strip() else {}
    form = await request.post()
    out: dict[str, Any] = {}
    for k, v in form.items():
        try:
            out[k] = json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
        except json.JSONDecodeError:
            out[k] = v
    return out


class FakeTelegram(FakePlatform):
    """The Bot API at ``/bot<token>/<method>``; ``tokens``: the bots it knows (more can be added)."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token
        self.tokens = {token}
        self.webhook: dict[str, Any] = {}
        self._ids = itertools.count(1000)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        method, params, token = request.match_info["method"], await _params(request), request.match_info["token"]
        if token not in self.tokens:
            self.calls.append(Call(method, params, time.time(), 401, token=token))
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        if self._rate_limited(method):
            self.calls.append(Call(method, params, time.time(), 429))
            body = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {self.retry_after}",
                "parameters": {"retry_after": self.retry_after},
            }
            return web.json_response(body, status=429)
        self.calls.append(Call(method, params, time.time(), 200, token=token))
        bot = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Shop", "username": "shop_bot"}
        if method == "getMe":
            return _ok(bot)
        if method == "sendMessage":
            chat_id = int(params["chat_id"])
            msg = {
                "message_id": next(self._ids),
                "from": bot,
                "chat": {"id": chat_id, "type": "private"},
                "date": int(time.time()),
                "text": params.get("text", ""),
            }
            if params.get("reply_markup"):
                msg["reply_markup"] = params["reply_markup"]
            return _ok(msg)
        if method == "answerCallbackQuery":
            return _ok(True)
        if method == "setWebhook":
            self.webhook = {"url": params.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}
            return _ok(True)
        if method == "deleteWebhook":
            self.webhook = {}
            return _ok(True)
        if method == "getWebhookInfo":
            return _ok(self.webhook or {"url": "", "has_custom_certificate": False, "pending_update_count": 0})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)


class FakeSlack(FakePlatform):
    """The Web API at ``/api/<method>``. ``members``: channel id -> its members' user ids, for
    ``conversations.members``, which gives at most ``members_page`` of them a page (Slack may give fewer
    than the ``limit`` asked for) with a ``next_cursor`` for the rest. ``tokens``: the bot tokens it
    knows and their workspaces. OAuth: ``apps`` (client id -> secret) and ``grant``, what Slack's
    authorize page does when an admin clicks Allow: a one-time code that ``oauth.v2.access`` exchanges
    for a new bot token."""

    def __init__(self, token: str, team: str = "T0SHOP"):
        super().__init__()
        self.token = token
        self.tokens: dict[str, str] = {token: team}
        self.apps: dict[str, str] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._ts = itertools.count(1)
        self.members: dict[str, list[str]] = {}
        self.members_page = 1000
        self.disconnect: set[str] = set()  # methods answered by closing the connection (a network failure)

    def grant(self, client_id: str, redirect_uri: str, team: str, team_name: str, user: str, scope: str) -> str:
        """The admin allowed the install of ``client_id`` in workspace ``team``: the code Slack redirects with."""
        code = f"{int(time.time())}.{next(self._ts)}.{base64.b16encode(team.encode()).decode().lower()}"
        self._codes[code] = {
            "client_id": client_id, "redirect_uri": redirect_uri, "team": team, "team_name": team_name,
            "user": user, "scope": scope,
        }  # fmt: skip
        return code

    def _oauth_v2_access(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        """oauth.v2.access as Slack answers it: client credentials by HTTP Basic auth (or in the form)."""
        client_id, secret = params.get("client_id"), params.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id not in self.apps:
            return {"ok": False, "error": "invalid_client_id"}
        if not hmac.compare_digest(str(secret or ""), self.apps[client_id]):
            return {"ok": False, "error": "bad_client_secret"}
        grant = self._codes.pop(str(params.get("code", "")), None)
        if grant is None or grant["client_id"] != client_id:
            return {"ok": False, "error": "invalid_code"}
        if params.get("redirect_uri") and params["redirect_uri"] != grant["redirect_uri"]:
            return {"ok": False, "error": "bad_redirect_uri"}
        token = f"xoxb-{next(self._ts)}-{grant['team'].lower()}-installed"
        self.tokens[token] = grant["team"]
        return {
            "ok": True,
            "access_token": token,
            "token_type": "bot",
            "scope": grant["scope"],
            "bot_user_id": "U0BOTNEW",
            "app_id": "A0SHOPBOT",
            "team": {"name": grant["team_name"], "id": grant["team"]},
            "enterprise": None,
            "authed_user": {"id": grant["user"]},
            "is_enterprise_install": False,
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        method, params = request.match_info["method"], await _params(request)
        if method in self.disconnect and request.transport is not None:
            self.calls.append(Call(method, params, time.time(), 0))
            request.transport.abort()  # the client sees the server disconnect
            return web.Response()
        if method == "oauth.v2.access":
            answer = self._oauth_v2_access(request, params)
            shown = {k: v for k, v in params.items() if k != "client_secret"}
            self.calls.append(Call(method, shown, time.time(), 200, result=answer))
            return web.json_response(answer)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            self.calls.append(Call(method, params, time.time(), 200))
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self._rate_limited(method):
            self.calls.append(Call(method, params, time.time(), 429))
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(self.retry_after)}
            )
        call = Call(method, params, time.time(), 200, token=token)
        self.calls.append(call)
        if method in ("chat.postMessage", "chat.update"):
            ts = params.get("ts") or f"{int(time.time())}.{next(self._ts):06d}"
            call.result = {"ok": True, "channel": params.get("channel"), "ts": ts}
            return web.json_response({**call.result, "message": params})
        if method == "chat.postEphemeral":
            return web.json_response({"ok": True, "message_ts": f"{int(time.time())}.000001"})
        if method == "views.open":
            call.result = self._views_open(params, self.tokens[token])
            return web.json_response(call.result)
        if method == "auth.test":
            return web.json_response({"ok": True, "team_id": self.tokens[token], "user_id": "UBOT", "bot_id": "B0BOT"})
        if method == "conversations.members":
            return web.json_response(self._members(params))
        return web.json_response({"ok": False, "error": "unknown_method"})

    def _views_open(self, params: dict[str, Any], team: str) -> dict[str, Any]:
        """views.open: a modal for a trigger id, checked against Slack's limits for a view (its errors are
        Slack's: ``invalid_arguments`` with the reasons in ``response_metadata.messages``)."""
        view, trigger = params.get("view"), str(params.get("trigger_id") or "")
        problems = _view_problems(view) if trigger else ["missing trigger_id"]
        if problems:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        assert isinstance(view, dict)
        opened = {
            **view, "id": f"V0{next(self._ts):08d}", "team_id": team, "state": {"values": {}},
            "hash": f"{int(time.time())}.{next(self._ts)}", "app_id": "A0SHOPBOT", "bot_id": "B0BOT",
        }  # fmt: skip
        return {"ok": True, "view": opened}

    def _members(self, params: dict[str, Any]) -> dict[str, Any]:
        """conversations.members: a page of user ids; the cursor is base64 of ``user:<next id>`` as Slack's."""
        channel = str(params.get("channel", ""))
        if channel not in self.members:
            return {"ok": False, "error": "channel_not_found"}
        try:
            limit = int(params.get("limit", 100))
        except ValueError:
            return {"ok": False, "error": "invalid_limit"}
        if not 0 < limit <= 1000:
            return {"ok": False, "error": "invalid_limit"}
        everyone = self.members[channel]
        start = 0
        if params.get("cursor"):
            try:
                after = base64.b64decode(str(params["cursor"]), validate=True).decode().removeprefix("user:")
                start = everyone.index(after)
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
        end = start + min(limit, self.members_page)
        cursor = base64.b64encode(f"user:{everyone[end]}".encode()).decode() if end < len(everyone) else ""
        return {"ok": True, "members": everyone[start:end], "response_metadata": {"next_cursor": cursor}}


def _text_problem(obj: Any, where: str, limit: int) -> list[str]:
    if not (isinstance(obj, dict) and obj.get("type") in ("plain_text", "mrkdwn") and isinstance(obj.get("text"), str)):
        return [f"{where}: a text object is required"]
    return [f"{where}: more than {limit} characters"] if not 0 < len(obj["text"]) <= limit else []


def _view_problems(view: Any) -> list[str]:
    """What Slack would refuse in a modal view (the limits of Block Kit's reference, the ones a view here
    may run into): title, buttons, blocks, block ids, input labels, select options, metadata."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["view: must be an object with type modal"]
    out = _text_problem(view.get("title"), "title", 24)
    for button in ("submit", "close"):
        if button in view:
            out += _text_problem(view[button], button, 24)
    if len(str(view.get("private_metadata", ""))) > 3000:
        out.append("private_metadata: more than 3000 characters")
    if len(str(view.get("callback_id", ""))) > 255:
        out.append("callback_id: more than 255 characters")
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 100:
        return [*out, "blocks: 1 to 100 blocks"]
    ids = [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("block_id") is not None]
    if len(ids) != len(set(ids)) or any(len(str(i)) > 255 for i in ids):
        out.append("block_id: must be unique, 255 characters at most")
    inputs = False
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section":
            out += _text_problem(block.get("text"), f"blocks[{i}].text", 3000)
        elif kind == "input":
            inputs = True
            out += _text_problem(block.get("label"), f"blocks[{i}].label", 2000)
            if "hint" in block:
                out += _text_problem(block["hint"], f"blocks[{i}].hint", 2000)
            element = block.get("element") or {}
            if element.get("type") == "static_select":
                options = element.get("options") or []
                if not 0 < len(options) <= 100:
                    out.append(f"blocks[{i}].element.options: 1 to 100 options")
                for o in options:
                    out += _text_problem(o.get("text"), f"blocks[{i}].element.options.text", 75)
                    if not 0 < len(str(o.get("value", ""))) <= 150:
                        out.append(f"blocks[{i}].element.options.value: 1 to 150 characters")
            elif element.get("type") != "plain_text_input":
                out.append(f"blocks[{i}].element: an input element is required")
        elif kind not in ("context", "divider", "header", "actions"):
            out.append(f"blocks[{i}]: unknown block type {kind!r}")
    if inputs and "submit" not in view:
        out.append("submit: required when the view has input blocks")
    return out


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


class Servers:
    """aiohttp apps served from a thread with its own event loop, like a server elsewhere:
    they keep answering while a test blocks its own loop."""

    def __init__(self, apps: dict[int, web.Application]):
        self.apps = apps
        self.loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-platforms", daemon=True)

    def start(self) -> Servers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        for port, app in self.apps.items():
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)

    def stop(self) -> None:
        async def _stop() -> None:
            for r in self._runners:
                await r.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def slack_headers(secret: str, body: bytes, ts: int | None = None, **extra: str) -> dict[str, str]:
    """Headers Slack sends: v0 HMAC-SHA256 of ``v0:<timestamp>:<body>``."""
    ts = int(time.time()) if ts is None else ts
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig, **extra}


def form_body(**fields: Any) -> bytes:
    return urlencode({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in fields.items()}).encode()
