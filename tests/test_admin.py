"""Admins: channel credentials, roles and tokens, the audit log, rate limits, origins, shoppers' data.

A gateway of its own (tests/services.py) on the test Redis (its own database
number) and its own SQLite file, pointed at the local Telegram and Slack
servers; the credentials change under it while it runs. One test at the end
uses the whole product to show that a worker picks up a new bot at once.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis
from services import (
    AGENT_CHANNEL,
    ROOT,
    SECRET_KEY,
    SLACK_TOKEN,
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    lone_gateway,
)
from services import (
    admin_cli as cli,
)
from test_channels import fixture
from test_platforms import TelegramShopper, action, command, slack_event, slack_post

pytestmark = pytest.mark.slow
NEW_SECRET = "rotated-webhook-secret-0001"
DESK_SECRET = "desk-signing-secret-0001"
NEWER_SECRET = "rotated-webhook-secret-0002"
SECOND_TOKEN = "654321:second-bot-token-abcdef"


@pytest.fixture(scope="module")
def admin_gw(tmp_path_factory, redis_server, platforms):
    handle = lone_gateway(
        tmp_path_factory.mktemp("admin"), redis_server.url, 4, platforms, "root admin",
        SHOPBOT_RATE_SESSION_PER_MIN="5", SHOPBOT_RATE_IP_PER_MIN="60",
        SHOPBOT_RATE_AUTH_FAILURES_PER_MIN="1000", SHOPBOT_LOG_LEVEL="DEBUG",
    )  # fmt: skip
    yield handle
    handle["proc"].stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(http, method: str, url: str, token: str | None = None, body=None, seen: list | None = None):
    headers = bearer(token) if token else {}
    async with http.request(method, url, json=body, headers=headers) as r:
        text = await r.text()
        if seen is not None:
            seen.append(text)
        return r.status, (json.loads(text) if r.content_type == "application/json" else text), r.headers


async def telegram_post(http, url: str, platforms: dict, secret: str) -> int:
    """A shopper's Telegram update to the gateway at ``url``, with ``secret`` in the header; the status."""
    shopper = TelegramShopper(http, {"url": url}, platforms, 7001)
    return (await shopper.post(shopper.update("where is my order?"), secret)).status


def everything_in_redis(url: str) -> str:
    r = redis.Redis.from_url(url, decode_responses=True)
    out = []
    for k in r.scan_iter(count=1000):
        t = r.type(k)
        out.append(k)
        if t == "string":
            out.append(r.get(k) or "")
        elif t == "hash":
            out.append(json.dumps(r.hgetall(k)))
        elif t == "list":
            out.append(json.dumps(r.lrange(k, 0, -1)))
        elif t == "zset":
            out.append(json.dumps(r.zrange(k, 0, -1)))
        elif t == "stream":
            out.append(json.dumps(r.xrange(k)))
        elif t == "set":
            out.append(json.dumps(sorted(r.smembers(k))))
    return "\n".join(out)


# -- credentials ------------------------------------------------------------------------------------


async def test_credentials_via_api_and_cli_take_effect_at_once_and_never_leak(admin_gw, platforms):
    url, env, admin = admin_gw["url"], admin_gw["env"], admin_gw["admin"]
    seen: list[str] = []
    async with aiohttp.ClientSession() as http:
        # First start: the environment's bot answers with the environment's secret.
        assert await telegram_post(http, url, platforms, TELEGRAM_SECRET) == 200

        status, entry, _ = await call(
            http,
            "PUT",
            f"{url}/admin/api/channels/telegram/shop",
            admin,
            {"bot_token": TELEGRAM_TOKEN, "webhook_secret": NEW_SECRET},
            seen,
        )
        assert status == 201, entry
        assert entry["secrets"] == {"bot_token": "…cret", "webhook_secret": "…0001"}
        # At once, with no restart: the store wins over the environment, the old secret is refused.
        assert await telegram_post(http, url, platforms, TELEGRAM_SECRET) == 403
        assert await telegram_post(http, url, platforms, NEW_SECRET) == 200

        # The CLI changes only the secret (the token stays), read from stdin, not the command line.
        done = cli(env, "channels", "set", "telegram", "shop", "--webhook-secret", "-", stdin=NEWER_SECRET + "\n")
        assert done.returncode == 0, done.stderr
        seen += [done.stdout, done.stderr]
        assert await telegram_post(http, url, platforms, NEW_SECRET) == 403
        assert await telegram_post(http, url, platforms, NEWER_SECRET) == 200
        # Registering the stored bot's webhook hands Telegram the stored secret.
        hooked = subprocess.run(
            [sys.executable, "-m", "channels.telegram", "--bot", "shop", "set-webhook", "--url", url],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert hooked.returncode == 0, hooked.stderr
        seen += [hooked.stdout, hooked.stderr]
        registered = platforms["telegram"].of("setWebhook")[-1]
        assert registered.params["secret_token"] == NEWER_SECRET and registered.token == TELEGRAM_TOKEN

        # A second bot on the same URL: its own secret selects it.
        status, entry, _ = await call(
            http, "PUT", f"{url}/admin/api/channels/telegram/second", admin, {"bot_token": SECOND_TOKEN}, seen
        )
        assert status == 201 and set(entry["generated"]) == {"webhook_secret"}
        generated = entry["generated"]["webhook_secret"]
        assert await telegram_post(http, url, platforms, generated) == 200
        keys = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True).keys("sb:conv:*654321:7001*meta")
        assert keys, "the second bot's update did not land in a conversation of that bot"

        status, listing, _ = await call(http, "GET", f"{url}/admin/api/channels", admin, seen=seen)
        assert status == 200
        names = {(c["platform"], c["name"]) for c in listing["channels"]}
        assert {("telegram", "shop"), ("telegram", "second"), ("slack", "environment")} <= names
        listed = cli(env, "channels", "list")
        assert listed.returncode == 0
        seen.append(listed.stdout)

        # Bad input is a clear 4xx.
        status, err, _ = await call(
            http, "PUT", f"{url}/admin/api/channels/telegram/bad", admin, {"bot_token": "nope"}, seen
        )
        assert status == 400 and "bot_token" in err["error"]
        status, err, _ = await call(http, "PUT", f"{url}/admin/api/channels/fax/x", admin, {}, seen)
        assert status == 404

        # "test" asks the platform: the local Bot API knows the first token, not the second.
        status, ok, _ = await call(http, "POST", f"{url}/admin/api/channels/telegram/shop/test", admin, seen=seen)
        assert status == 200 and ok["ok"] is True and "@shop_bot" in ok["detail"]
        status, bad, _ = await call(http, "POST", f"{url}/admin/api/channels/telegram/second/test", admin, seen=seen)
        assert status == 200 and bad["ok"] is False and "rejected the bot token" in bad["detail"]
        tested = cli(env, "channels", "test", "slack", "environment")
        assert tested.returncode == 0 and "T0SHOP" not in tested.stderr and tested.stdout.startswith("ok:")
        seen.append(tested.stdout)

        # Removing both stored bots gives the environment's back.
        for name in ("shop", "second"):
            status, _, _ = await call(http, "DELETE", f"{url}/admin/api/channels/telegram/{name}", admin, seen=seen)
            assert status == 200
        assert await telegram_post(http, url, platforms, TELEGRAM_SECRET) == 200
        assert await telegram_post(http, url, platforms, NEWER_SECRET) == 403

    # The raw values are nowhere: not in Redis, the database, the logs, or any answer.
    raw = [NEW_SECRET, NEWER_SECRET, TELEGRAM_TOKEN.split(":")[1], SECOND_TOKEN.split(":")[1], generated]
    places = {
        "redis": everything_in_redis(env["SHOPBOT_REDIS_URL"]),
        "database": Path(env["SHOPBOT_DATABASE_URL"].removeprefix("sqlite:///")).read_bytes().decode("latin-1"),
        "gateway log": admin_gw["log"].read_text(),
        "api answers and cli output": "\n".join(seen),
    }
    for where, text in places.items():
        for value in raw:
            if where == "api answers and cli output" and value == generated:
                continue  # shown once, on purpose, when it was made up
            assert value not in text, f"a raw credential is in the {where}"


async def test_key_rotation_reencrypts_and_old_key_alone_cannot_open(admin_gw):
    url, env, admin = admin_gw["url"], admin_gw["env"], admin_gw["admin"]
    async with aiohttp.ClientSession() as http:
        status, _, _ = await call(
            http,
            "PUT",
            f"{url}/admin/api/channels/slack/rotated",
            admin,
            {"bot_token": SLACK_TOKEN, "signing_secret": "rotation-signing-secret"},
        )
        assert status == 201
    new_key = cli(env, "keys", "generate").stdout.strip()
    rotating = {**env, "SHOPBOT_SECRET_KEY": new_key, "SHOPBOT_PREVIOUS_SECRET_KEYS": SECRET_KEY}
    done = cli(rotating, "keys", "rotate")
    assert done.returncode == 0, done.stderr
    assert re.search(r"re-encrypted [1-9]\d* entr", done.stdout)
    # With the new key alone the entry opens; with the old key alone it does not.
    only_new = {**env, "SHOPBOT_SECRET_KEY": new_key}
    assert cli(only_new, "channels", "test", "slack", "rotated").returncode == 0
    old = cli(env, "channels", "test", "slack", "rotated")
    assert old.returncode != 0 and "sealed with key" in old.stderr + old.stdout
    # Back to the test key for the rest of the module.
    back = cli({**env, "SHOPBOT_PREVIOUS_SECRET_KEYS": new_key}, "keys", "rotate")
    assert back.returncode == 0, back.stderr
    assert cli(env, "channels", "remove", "slack", "rotated").returncode == 0


# -- roles -------------------------------------------------------------------------------------------

# (method, path, body, lowest role): bodies and ids that change nothing, so every role can be tried.
ENDPOINTS = [
    ("GET", "/admin/api/me", None, "viewer"),
    ("GET", "/admin/api/analytics", None, "viewer"),
    ("GET", "/admin/api/analytics/outcomes?period=week", None, "viewer"),
    ("GET", "/admin/api/analytics/intents", None, "viewer"),
    ("GET", "/admin/api/analytics/faq?format=csv", None, "viewer"),
    ("GET", "/handoff/api/queue", None, "agent"),
    ("GET", "/handoff/api/conversations/web:web:nobody", None, "agent"),
    ("POST", "/handoff/api/conversations/web:web:nobody/claim", None, "agent"),
    ("POST", "/handoff/api/conversations/web:web:nobody/reply", {"text": "hi"}, "agent"),
    ("POST", "/handoff/api/conversations/web:web:nobody/resolve", None, "agent"),
    ("GET", "/admin/api/conversations/web:web:nobody/export", None, "agent"),
    ("GET", "/admin/api/channels", None, "admin"),
    ("PUT", "/admin/api/channels/web/site", {"allowed_origins": []}, "admin"),
    ("DELETE", "/admin/api/channels/web/nothing-here", None, "admin"),
    ("POST", "/admin/api/channels/web/nothing-here/test", None, "admin"),
    ("GET", "/admin/api/tokens", None, "admin"),
    ("POST", "/admin/api/tokens", {"name": "x", "role": "boss"}, "admin"),
    ("DELETE", "/admin/api/tokens/000000000000", None, "admin"),
    ("GET", "/admin/api/audit", None, "admin"),
    ("GET", "/admin/api/policies", None, "admin"),
    ("POST", "/admin/api/shoppers/forget", {}, "admin"),
]
RANK = {"viewer": 0, "agent": 1, "admin": 2}


async def test_every_endpoint_answers_401_403_or_serves_by_role(admin_gw):
    url, admin = admin_gw["url"], admin_gw["admin"]
    async with aiohttp.ClientSession() as http:
        tokens = {"admin": admin}
        for role in ("agent", "viewer"):
            status, made, _ = await call(http, "POST", f"{url}/admin/api/tokens", admin, {"name": role, "role": role})
            assert status == 201 and made["token"].startswith("sbt_")
            tokens[role] = made["token"]
        status, revoked_made, _ = await call(
            http, "POST", f"{url}/admin/api/tokens", admin, {"name": "gone", "role": "admin"}
        )
        assert (await call(http, "DELETE", f"{url}/admin/api/tokens/{revoked_made['id']}", admin))[0] == 200

        for method, path, body, lowest in ENDPOINTS:
            for token, expect in (
                (None, {401}),
                ("sbt_000000000000_" + "x" * 43, {401}),
                (revoked_made["token"], {401}),
            ):
                status, _, headers = await call(http, method, url + path, token, body)
                assert status in expect, (method, path, token, status)
            for role, token in tokens.items():
                status, answer, _ = await call(http, method, url + path, token, body)
                if RANK[role] < RANK[lowest]:
                    assert status == 403, (method, path, role, status)
                    assert lowest in answer["error"]
                else:
                    assert status not in (401, 403) and status < 500, (method, path, role, status, answer)

        # Tokens are stored hashed: the listing and the database hold no token.
        status, listing, _ = await call(http, "GET", f"{url}/admin/api/tokens", admin)
        assert {t["role"] for t in listing["tokens"]} >= {"admin", "agent", "viewer"}
        db = Path(admin_gw["env"]["SHOPBOT_DATABASE_URL"].removeprefix("sqlite:///")).read_bytes()
        for token in tokens.values():
            assert token.encode() not in db and token not in json.dumps(listing)

        # The audit log: who, what, when, from where, for the admin actions and the refusals.
        status, log, _ = await call(http, "GET", f"{url}/admin/api/audit?limit=500", admin)
        entries = log["entries"]
        made = [e for e in entries if e["action"] == "token.create" and e["outcome"] == "ok"]
        assert made and made[0]["actor"].startswith("root admin") and made[0]["source"].startswith("127.0.0.1")
        assert any(e["action"] == "token.revoke" and e["target"] == revoked_made["id"] for e in entries)
        assert any(e["outcome"] == "refused 403" and e["role"] == "viewer" for e in entries)
        assert any(e["action"] == "token.create" and e["actor"].startswith("cli:") for e in entries)
        # Staff reading a shopper's conversation is recorded too, with who read it.
        reads = [e for e in entries if e["action"] == "handoff.read" and e["target"] == "web:web:nobody"]
        assert {e["role"] for e in reads} >= {"agent", "admin"}
        assert all(e["at"] > time.time() - 600 for e in entries)
        status, _, _ = await call(http, "GET", f"{url}/admin/api/audit?limit=zero", admin)
        assert status == 400

        # Revoked from the CLI: refused at the next request.
        viewer_id = next(t["id"] for t in listing["tokens"] if t["name"] == "viewer")
        assert cli(admin_gw["env"], "tokens", "revoke", viewer_id).returncode == 0
        assert (await call(http, "GET", f"{url}/admin/api/me", tokens["viewer"]))[0] == 401


# -- public endpoints: rate limits, origins ------------------------------------------------------------


async def test_rate_limits_answer_429_with_retry_after_and_a_polite_message(admin_gw):
    url = admin_gw["url"]
    async with aiohttp.ClientSession() as http:
        status, session, _ = await call(http, "POST", f"{url}/web/sessions", body={"locale": "zh"})
        assert status == 201
        sid = session["session_id"]
        for i in range(5):
            status, _, _ = await call(http, "POST", f"{url}/web/messages", body={"session_id": sid, "text": f"hi {i}"})
            assert status == 202
        status, answer, headers = await call(
            http, "POST", f"{url}/web/messages", body={"session_id": sid, "text": "again", "locale": "zh"}
        )
        assert status == 429
        assert 1 <= int(headers["Retry-After"]) <= 61 and answer["retry_after"] == int(headers["Retry-After"])
        assert "稍等" in answer["message"]
        # The same limit on the socket: an error frame with the polite message, the socket stays open.
        async with http.ws_connect(f"{url}/web/ws?session_id={sid}") as ws:
            await ws.send_json({"type": "message", "text": "more", "client_message_id": "c1", "locale": "en"})
            frame = await ws.receive_json(timeout=10)
            while frame["type"] != "error":
                frame = await ws.receive_json(timeout=10)
            assert frame["code"] == "rate_limited" and frame["client_message_id"] == "c1"
            assert "wait a few seconds" in frame["message"]
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=10))["type"] in ("pong", "typing", "message")
        # Another session is not limited by this one.
        _, other, _ = await call(http, "POST", f"{url}/web/sessions", body={})
        status, _, _ = await call(
            http, "POST", f"{url}/web/messages", body={"session_id": other["session_id"], "text": "hi"}
        )
        assert status == 202
        # Per IP: 60 requests a minute on the public endpoints, then 429 for everything from this address.
        statuses = []
        for _ in range(70):
            status, _, headers = await call(http, "GET", f"{url}/web/messages?session_id={other['session_id']}")
            statuses.append(status)
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
                break
        assert statuses[-1] == 429 and statuses.count(200) >= 40


# A WebSocket handshake by hand, to read the HTTP answer when the server refuses the upgrade.
WS_UPGRADE = {
    "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}  # fmt: skip


async def test_sockets_are_capped_and_their_frames_count_against_the_address(admin_gw):
    url, env = admin_gw["url"], admin_gw["env"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"])
    r.delete(*(r.keys("sb:rl:*") or ["none"]))
    async with aiohttp.ClientSession() as http:
        _, session, _ = await call(http, "POST", f"{url}/web/sessions", body={})
        sid = session["session_id"]
        # One chat may have a few windows open (SHOPBOT_SOCKETS_PER_SESSION, 4), not more.
        windows = [await http.ws_connect(f"{url}/web/ws?session_id={sid}") for _ in range(4)]
        async with http.get(f"{url}/web/ws?session_id={sid}", headers=WS_UPGRADE) as resp:
            assert resp.status == 429 and "open windows" in (await resp.json())["error"]
        await windows.pop().close()
        await asyncio.sleep(0.2)
        windows.append(await http.ws_connect(f"{url}/web/ws?session_id={sid}"))  # a closed one frees its place
        # Frames are requests too: 60 a minute from one address (this gateway's SHOPBOT_RATE_IP_PER_MIN).
        r.delete(*(r.keys("sb:rl:*") or ["none"]))
        ws, replies = windows[0], []
        for _ in range(65):
            await ws.send_json({"type": "ping"})
            replies.append(await ws.receive_json(timeout=10))
        limited = [f for f in replies if f.get("code") == "rate_limited"]
        assert limited and replies.index(limited[0]) >= 55 and "requests from your address" in limited[0]["reason"]
        for w in windows:
            await w.close()
    r.delete(*(r.keys("sb:rl:*") or ["none"]))


async def test_one_redis_reader_serves_every_socket_of_a_gateway(admin_gw):
    """Sockets hold no Redis connection of their own: one reader per gateway reads every open
    conversation's log and hands each socket its own conversation's messages, in order, once."""
    from shopbot.store import ConversationStore, Outgoing

    env = admin_gw["env"]
    url, redis_url = admin_gw["url"], env["SHOPBOT_REDIS_URL"]
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.delete(*(r.keys("sb:rl:*") or ["none"]))
    db = str(r.connection_pool.connection_kwargs.get("db", 0))
    store = ConversationStore.from_url(redis_url)

    def blocked_readers() -> int:
        return sum(1 for c in r.client_list() if c.get("cmd") == "xread" and c.get("db") == db)

    async def texts(ws, n: int) -> list[str]:
        got = []
        while len(got) < n:
            frame = await ws.receive_json(timeout=10)
            if frame["type"] == "message":
                got.append(frame["text"])
        return got

    async with aiohttp.ClientSession() as http:
        chats = []
        for _ in range(8):
            _, session, _ = await call(http, "POST", f"{url}/web/sessions", body={})
            chats.append((session["session_id"], session["conversation_id"]))
        sockets = [await http.ws_connect(f"{url}/web/ws?session_id={sid}") for sid, _ in chats]
        for _ in range(50):
            if blocked_readers() == 1:
                break
            await asyncio.sleep(0.1)
        assert blocked_readers() == 1  # eight sockets, one connection waiting on Redis
        ids = {}
        for i, (_, cid) in enumerate(chats):
            for k in range(3):
                ids[i, k], _ = store.record_reply(cid, f"fanout-{i}-{k}", Outgoing("bot", f"reply {i}.{k}"), {})
        for i, ws in enumerate(sockets):
            assert await texts(ws, 3) == [f"reply {i}.{k}" for k in range(3)]
        # A socket that comes back with the last id it saw gets what it missed, then what comes next.
        sid0, cid0 = chats[0]
        late = await http.ws_connect(f"{url}/web/ws?session_id={sid0}&after={ids[0, 0]}")
        assert await texts(late, 2) == ["reply 0.1", "reply 0.2"]
        store.record_reply(cid0, "fanout-0-3", Outgoing("bot", "reply 0.3"), {})
        assert await texts(late, 1) == ["reply 0.3"] and await texts(sockets[0], 1) == ["reply 0.3"]
        for ws in (late, sockets[0], sockets[1]):  # and nothing twice
            try:
                while True:
                    frame = await ws.receive_json(timeout=0.5)
                    assert frame["type"] != "message", frame
            except TimeoutError:
                pass
        for ws in (late, *sockets):
            await ws.close()
    r.delete(*(r.keys("sb:rl:*") or ["none"]))


async def test_only_allowed_origins_may_open_the_socket(admin_gw, redis_server):
    url, admin = admin_gw["url"], admin_gw["admin"]
    redis.Redis.from_url(admin_gw["env"]["SHOPBOT_REDIS_URL"]).delete(*redis.Redis.from_url(
        admin_gw["env"]["SHOPBOT_REDIS_URL"]).keys("sb:rl:ip:*") or ["none"])  # fmt: skip
    shop, evil = "https://shop.example.com", "https://evil.example.net"
    async with aiohttp.ClientSession() as http:
        status, _, _ = await call(http, "PUT", f"{url}/admin/api/channels/web/site", admin, {"allowed_origins": [shop]})
        assert status in (200, 201)
        _, session, _ = await call(http, "POST", f"{url}/web/sessions", body={})
        ws_url = f"{url}/web/ws?session_id={session['session_id']}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url, headers={"Origin": evil})
        assert refused.value.status == 403
        async with http.ws_connect(ws_url, headers={"Origin": shop}) as ws:
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=10))["type"] == "pong"
        own = url  # the gateway's own page
        async with http.ws_connect(ws_url, headers={"Origin": own}) as ws:
            assert not ws.closed
        # Cross-site HTTP: the shop's page gets CORS answers, another site's page a 403.
        async with http.options(f"{url}/web/sessions", headers={"Origin": shop}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == shop
        async with http.post(f"{url}/web/sessions", json={}, headers={"Origin": evil}) as r:
            assert r.status == 403 and "origin" in (await r.json())["error"]
        assert (await call(http, "DELETE", f"{url}/admin/api/channels/web/site", admin))[0] == 200


# -- shoppers' data ------------------------------------------------------------------------------------


def _without_stamps(export: dict) -> str:
    """An export as JSON text without its messages' ids and times: a millisecond stamp ("1796662555678-0")
    may hold any four digits, so only what was written and kept is searched for a shopper's numbers."""
    kept = [{k: v for k, v in m.items() if k not in ("message_id", "ts")} for m in export["messages"]]
    return json.dumps({**export, "messages": kept}, ensure_ascii=False)


async def test_export_is_masked_and_forget_deletes_everything_about_a_shopper(admin_gw, platforms):
    url, env, admin = admin_gw["url"], admin_gw["env"], admin_gw["admin"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    r.delete(*(r.keys("sb:rl:*") or ["none"]))
    user = 8_800_001
    async with aiohttp.ClientSession() as http:
        shopper = TelegramShopper(http, {"url": url}, platforms, user)
        for text in ["my phone is 138 1234 5678, mail li.wei@example.cn", "卡号 4111 1111 1111 1111"]:
            assert (await shopper.post(shopper.update(text))).status == 200
        cid = shopper.cid
        r.zadd("sb:handoff:queue", {cid: 1.0})  # as if waiting for a person
        status, out, _ = await call(http, "GET", f"{url}/admin/api/conversations/{cid}/export", admin)
        assert status == 200 and len(out["messages"]) == 2
        text = _without_stamps(out)
        assert "[phone]" in text and "[email]" in text and "[card]" in text
        assert "5678" not in text and "li.wei" not in text and "4111" not in text
        exported = cli(env, "export", cid)
        assert exported.returncode == 0 and "[card]" in exported.stdout
        assert "4111" not in _without_stamps(json.loads(exported.stdout))

        assert r.keys(f"sb:conv:{{{cid}}}:*")
        status, gone, _ = await call(
            http, "POST", f"{url}/admin/api/shoppers/forget", admin, {"channel": "telegram", "user": str(user)}
        )
        assert status == 200 and gone["conversations"] == 1 and gone["redis_keys"] >= 3
        assert not r.keys(f"sb:conv:{{{cid}}}:*")
        assert r.zscore("sb:handoff:queue", cid) is None
        assert not any(cid in row for row in r.lrange("sb:transcripts", 0, -1))
        status, _, _ = await call(http, "GET", f"{url}/admin/api/conversations/{cid}/export", admin)
        assert status == 404
        # The CLI finds nothing left, and says so.
        again = cli(env, "shoppers", "forget", "--channel", "telegram", "--user", str(user))
        assert again.returncode == 0 and json.loads(again.stdout)["conversation_ids"] == []
        status, log, _ = await call(http, "GET", f"{url}/admin/api/audit", admin)
        assert {"shopper.forget", "conversation.export"} <= {e["action"] for e in log["entries"]}

        # A web shopper is forgotten by the session id their browser keeps, which their
        # conversation id does not contain.
        async with http.post(f"{url}/web/sessions", json={}) as resp:
            session = await resp.json()
        sid, web_cid = session["session_id"], session["conversation_id"]
        assert sid not in web_cid
        async with http.post(f"{url}/web/messages", json={"session_id": sid, "text": "hello"}) as resp:
            assert resp.status == 202 and (await resp.json())["conversation_id"] == web_cid
        assert r.keys(f"sb:conv:{{{web_cid}}}:*")
        status, gone, _ = await call(
            http, "POST", f"{url}/admin/api/shoppers/forget", admin, {"channel": "web", "user": sid}
        )
        assert status == 200 and gone["conversations"] == 1 and not r.keys(f"sb:conv:{{{web_cid}}}:*")

        # A conversation begun before ids hid the session keeps its id until it expires.
        from shopbot.store import ConversationStore

        old_sid = "legacy-session-0001"
        legacy = f"web:default:{old_sid}"
        ConversationStore.from_url(env["SHOPBOT_REDIS_URL"]).create(legacy, {"channel": "web", "chat": old_sid})
        async with http.get(f"{url}/web/messages?session_id={old_sid}") as resp:
            assert resp.status == 200 and (await resp.json())["conversation_id"] == legacy
        async with http.post(f"{url}/web/messages", json={"session_id": old_sid, "text": "still there?"}) as resp:
            assert resp.status == 202 and (await resp.json())["conversation_id"] == legacy


async def test_logs_mask_personal_data(admin_gw):
    from shopbot.logs import MaskPersonalData

    record = logging.makeLogRecord(
        {
            "msg": "lookup for %s",
            "args": ("+86 138-1234-5678",),
            "email": "a.b@shop.cn",
            "conversation_id": "telegram:1:13812345678",
        }
    )
    MaskPersonalData().filter(record)
    assert record.getMessage() == "lookup for [phone]" and record.email == "[email]"
    assert record.conversation_id == "telegram:1:13812345678"  # ids are kept
    # The gateway's own log, after the requests above, has none of the shoppers' numbers.
    text = admin_gw["log"].read_text()
    assert "li.wei@example.cn" not in text and "4111 1111" not in text


# -- the whole product: a worker picks up a new bot without a restart ------------------------------------


async def test_workers_use_a_bot_added_while_they_run(product, platforms):
    url = product["url"]
    made = cli(product["env"], "tokens", "create", "--name", "ops", "--role", "admin")
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip().splitlines()[-1]
    tg = platforms["telegram"]
    tg.tokens.add(SECOND_TOKEN)
    async with aiohttp.ClientSession() as http:
        try:
            for name, token, secret in (
                ("main", TELEGRAM_TOKEN, TELEGRAM_SECRET),
                ("second", SECOND_TOKEN, NEW_SECRET),
            ):
                status, _, _ = await call(
                    http,
                    "PUT",
                    f"{url}/admin/api/channels/telegram/{name}",
                    admin,
                    {"bot_token": token, "webhook_secret": secret, "api_base_url": platforms["telegram_url"]},
                )
                assert status == 201
            shopper = TelegramShopper(http, product, platforms, 7_700_001)
            body = shopper.update("hello")
            assert (await shopper.post(body, secret=NEW_SECRET)).status == 200
            call_ = await tg.wait_for("sendMessage", lambda c: int(c.params["chat_id"]) == 7_700_001, timeout=90)
            assert call_.token == SECOND_TOKEN  # the reply went out through the bot that was written to
        finally:
            for name in ("main", "second"):
                await call(http, "DELETE", f"{url}/admin/api/channels/telegram/{name}", admin)
            tg.tokens.discard(SECOND_TOKEN)


# -- the admin page, in headless Chromium -----------------------------------------------------------


@pytest.mark.browser
def test_admin_page_sign_in_channels_queue_and_audit(admin_gw):
    from playwright.sync_api import sync_playwright
    from test_widget_browser import CHROMIUM

    url, admin = admin_gw["url"], admin_gw["admin"]
    r = redis.Redis.from_url(admin_gw["env"]["SHOPBOT_REDIS_URL"], decode_responses=True)
    cid = "web:web:browser-queued-shopper"
    state = {"status": "queued", "priority": 3, "handoff_reason": "refund_dispute", "queued_at": time.time() - 30}
    r.set(f"sb:conv:{{{cid}}}:state", json.dumps(state))
    r.hset(f"sb:conv:{{{cid}}}:meta", mapping={"channel": "web"})
    r.zadd("sb:handoff:queue", {cid: 1.0})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("dialog", lambda d: d.accept())
        page.goto(url + "/admin")
        page.fill("#token", "sbt_000000000000_" + "x" * 43)
        page.click("#signin-form button")
        page.wait_for_selector("#flash.err >> text=unknown or revoked token")

        page.fill("#token", admin)
        page.click("#signin-form button")
        page.wait_for_selector("#who >> text=root admin (admin)")
        page.wait_for_selector("#channels-table tr[data-key='slack/environment']")
        assert "…" in page.inner_text("#channels-table tr[data-key='slack/environment']")

        # Add the web widget's origins, then see it listed; test the environment's Telegram bot.
        page.select_option("#channel-form select[name=platform]", "web")
        assert page.is_hidden("#channel-form input[name=bot_token]")
        page.fill("#channel-form input[name=name]", "browser-site")
        page.fill("#channel-form input[name=allowed_origins]", "https://a.example.com, https://b.example.com")
        page.click("#channel-form button[type=submit]")
        page.wait_for_selector("#flash.ok >> text=Saved web/browser-site")
        row = page.wait_for_selector("#channels-table tr[data-key='web/browser-site']")
        assert "https://b.example.com" in row.inner_text()
        page.click("#channels-table tr[data-key='telegram/environment'] >> text=Test")
        page.wait_for_selector("#flash.ok >> text=Telegram knows this bot")

        # A secret too short for Slack: the page says why, nothing is saved.
        page.select_option("#channel-form select[name=platform]", "slack")
        page.fill("#channel-form input[name=name]", "bad")
        page.fill("#channel-form input[name=bot_token]", "not-a-token")
        page.click("#channel-form button[type=submit]")
        page.wait_for_selector("#flash.err >> text=Not saved")
        assert page.locator("#channels-table tr[data-key='slack/bad']").count() == 0

        page.click("#channels-table tr[data-key='web/browser-site'] >> text=Remove")
        page.wait_for_selector("#flash.ok >> text=Removed web/browser-site")

        page.click("nav button[data-tab=queue]")
        queued = page.wait_for_selector(f"#queue-table td >> text={cid}")
        assert "refund_dispute" in queued.evaluate("td => td.parentElement.innerText")

        page.click("nav button[data-tab=audit]")
        page.wait_for_selector("#audit-table td >> text=channel.remove")
        audit_text = page.inner_text("#audit-table")
        assert "web/browser-site" in audit_text and "root admin" in audit_text and "channel.test" in audit_text

        page.click("#signout")
        assert page.is_visible("#signin-form") and page.evaluate("sessionStorage.length") == 0
        browser.close()
    r.zrem("sb:handoff:queue", cid)


# -- analytics (shopbot/analytics.py; the figures themselves: tests/test_analytics.py) ----------------------------


def seed_analytics(admin_gw) -> list[dict]:
    """60 conversations of the generated history (April 2024) in the gateway's transcripts, once."""
    from sqlalchemy import create_engine
    from sqlalchemy.dialects.sqlite import insert
    from test_analytics import history

    from shopbot.transcripts import messages

    rows = [r for r in history() if int(r["conversation_id"].rsplit(":", 1)[1]) < 60]
    engine = create_engine(admin_gw["env"]["SHOPBOT_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(insert(messages).on_conflict_do_nothing(index_elements=["conversation_id", "message_id"]), rows)
    engine.dispose()
    return rows


async def test_analytics_reports_as_json_and_csv_by_filter(admin_gw):
    from test_analytics import FIRST_DAY, expected_outcomes

    rows = seed_analytics(admin_gw)
    url, admin = admin_gw["url"], admin_gw["admin"]
    api = f"{url}/admin/api/analytics"
    dates = f"from={FIRST_DAY}&to=2024-04-30"  # the history's weeks: nothing else the tests write
    async with aiohttp.ClientSession() as http:
        _, made, _ = await call(http, "POST", f"{url}/admin/api/tokens", admin, {"name": "analyst", "role": "viewer"})
        viewer = made["token"]
        status, week, _ = await call(http, "GET", f"{api}/outcomes?period=week&channel=web&{dates}", viewer)
        want = expected_outcomes(rows, "week", start=FIRST_DAY, end=None, channel="web", language=None)
        assert status == 200 and week["totals"] == want["totals"] and week["series"] == want["series"]
        assert week["filters"] == {"from": "2024-04-03", "to": "2024-04-30", "channel": "web", "language": None}

        status, text, headers = await call(http, "GET", f"{api}/outcomes?period=day&format=csv&{dates}", viewer)
        assert status == 200 and headers["Content-Type"] == "text/csv; charset=utf-8"
        assert headers["Content-Disposition"] == 'attachment; filename="shopbot-outcomes-day.csv"'
        table = list(csv.DictReader(io.StringIO(text)))
        assert table[0]["scope"] == "day" and [r["key"] for r in table if r["scope"] == "total"] == [""]
        for name, key in (("intents", "intent"), ("faq", "entry")):
            status, text, headers = await call(http, "GET", f"{api}/{name}?format=csv&language=en&{dates}", viewer)
            assert status == 200 and headers["Content-Type"].startswith("text/csv")
            status, report, _ = await call(http, "GET", f"{api}/{name}?language=en&{dates}", viewer)
            got = [r[key] or "" for r in csv.DictReader(io.StringIO(text))]
            assert status == 200 and got == [r[key] or "" for r in report[name]] and got

        for query, reason in (
            ("period=month", "period must be one of day, week"),
            ("from=2024-02-30", "from must be a date as YYYY-MM-DD"),
            ("from=2024-05-02&to=2024-05-01", "from must not be after to"),
            ("channel=fax", "channel must be one of"),
            ("format=xml", "format must be json or csv"),
        ):
            status, answer, _ = await call(http, "GET", f"{api}/outcomes?{query}", viewer)
            assert status == 400 and reason in answer["error"], (query, answer)
        assert (await call(http, "GET", f"{api}/faq?language=fr", viewer))[0] == 400
        assert (await call(http, "GET", f"{api}/intents"))[0] == 401


@pytest.mark.browser
def test_admin_page_analytics_charts_tables_and_an_faq_entry_from_a_group(admin_gw):
    from playwright.sync_api import sync_playwright
    from test_widget_browser import CHROMIUM

    seed_analytics(admin_gw)
    examples = ["<img src=x onerror=alert(1)>gift cards?", "e-gift card", "voucher"]
    answer = "Yes: gift cards from 10 to 500 euros."
    groups = {
        "status": "ready",
        "computed_at": time.time(),
        "groups": [{"count": 7, "language": "en", "examples": examples}],
    }
    posted, problems = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        # The groups and the FAQ entry are the NLU worker's and the shop's: answered here as they would be.
        page.route("**/admin/api/analytics/unanswered", lambda r: r.fulfill(json=groups))
        page.route("**/admin/api/faq", lambda r: (posted.append(r.request.post_data_json),
                                                   r.fulfill(status=201, json={"id": "gift-cards"})))  # fmt: skip
        served = page.goto(admin_gw["url"] + "/admin")
        assert "script-src 'self'" in served.headers["content-security-policy"]
        page.fill("#token", admin_gw["admin"])
        page.click("#signin-form button")
        page.wait_for_selector("#who >> text=root admin (admin)")

        page.click("nav button[data-tab=analytics]")
        row = page.wait_for_selector("#intents-table tr[data-intent=track_order]")
        assert int(row.query_selector_all("td")[1].inner_text()) > 0
        assert page.locator("#faq-table tbody tr").count() >= 5
        assert "automation rate" in page.inner_text("#analytics-totals")
        for chart in ("chart-rates", "chart-outcomes", "chart-handoffs", "chart-csat"):
            assert page.evaluate(f"Chart.getChart(document.getElementById('{chart}')).data.labels.length") >= 20
        page.select_option("#analytics-form select[name=period]", "week")
        page.click("#analytics-form button[type=submit]")
        weeks = "() => Chart.getChart(document.getElementById('chart-outcomes')).data.labels.length === 5"
        page.wait_for_function(weeks)  # a function, not an expression: the page's CSP allows no eval
        with page.expect_download() as download:
            page.click("a[data-csv=outcomes]")
        assert download.value.suggested_filename == "shopbot-outcomes-week.csv"
        assert Path(download.value.path()).read_text().startswith("scope,key,outcomes,")

        page.click("nav button[data-tab=unanswered]")
        card = page.wait_for_selector("#unanswered-groups .group")
        assert "<img src=x onerror=alert(1)>gift cards?" in card.inner_text() and not card.query_selector("img")
        card.query_selector("text=Add an FAQ entry").click()
        page.fill("#unanswered-groups .group textarea[name=answer]", answer)
        page.click("#unanswered-groups .group button[type=submit]")
        page.wait_for_selector("#flash.ok >> text=Added FAQ entry gift-cards")
        browser.close()
    assert posted == [{"question_en": examples[0], "answer_en": answer, "also_asked_en": examples}]
    assert problems == []


@pytest.mark.browser
def test_widget_shows_the_polite_message_when_the_shopper_is_too_fast(admin_gw):
    from playwright.sync_api import sync_playwright
    from test_widget_browser import CHROMIUM

    r = redis.Redis.from_url(admin_gw["env"]["SHOPBOT_REDIS_URL"], decode_responses=True)
    r.delete(*(r.keys("sb:rl:*") or ["none"]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(admin_gw["url"] + "/")
        page.wait_for_selector(".sb-widget.sb-online", timeout=15_000)
        for i in range(6):  # this gateway allows 5 messages a minute per session
            page.fill(".sb-input", f"message {i}")
            page.keyboard.press("Enter")
        page.wait_for_selector(".sb-from-system .sb-text >> text=wait a few seconds", timeout=10_000)
        assert page.locator(".sb-msg.sb-failed").count() == 1  # the one refused, marked; the others went
        browser.close()


def test_a_user_id_with_a_like_wildcard_finds_only_its_own_transcripts(redis_server, tmp_path):
    from admin.privacy import conversations_of
    from shopbot import db, transcripts
    from shopbot.store import ConversationStore

    engine = db.engine_for(f"sqlite:///{tmp_path / 'forget.db'}")
    rows = [
        {"conversation_id": f"telegram:default:{uid}", "message_id": "1-0", "channel": "telegram",
         "sender": "shopper", "text": "hi", "ts": 1.0}
        for uid in ("5012346601", "501234660_")
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(transcripts.messages.insert(), rows)
    # (Ids no other test uses: conversations_of also looks in Redis, which the product's tests share.)
    store = ConversationStore.from_url(redis_server.url)
    # "_" is a LIKE wildcard: unescaped, the crafted id would also find (and forget) 5012346601's chats.
    assert conversations_of(store, engine, "telegram", "501234660_") == ["telegram:default:501234660_"]
    assert conversations_of(store, engine, "telegram", "5012346601") == ["telegram:default:5012346601"]


def test_forgetting_finds_transcripts_by_their_shopper_and_waits_for_the_flusher(redis_server, tmp_path):
    """Gone from Redis, a Slack shopper's DM (keyed by its D... channel) and their conversation in a
    shared channel are still found by their user id; a web shopper's by the session id. Forgetting
    never interleaves with the transcript flusher (it read a batch and will trim it)."""
    from admin import privacy
    from channels import web
    from shopbot import db, transcripts
    from shopbot.store import TRANSCRIPTS, TRANSCRIPTS_LOCK, ConversationStore

    engine = db.engine_for(f"sqlite:///{tmp_path / 'forget-by-shopper.db'}")
    store = ConversationStore.from_url(redis_server.url)
    sid = "a-web-session-id-0001"
    mine = {
        "slack:T0SHOP:D0DMSHOP9": {"channel": "slack", "sender": "U0SHOPPER9", "chat": "D0DMSHOP9"},
        "slack:T0SHOP:C0GEN.U0SHOPPER9": {"channel": "slack", "sender": "U0SHOPPER9"},
        web.conversation_id(sid): {"channel": "web", "sender": web.public_id(sid)},
    }
    rows = [
        transcripts.transcript_row(cid, meta, "1-0", "shopper", "hello", 1.0) for cid, meta in mine.items()
    ] + [transcripts.transcript_row("slack:T0SHOP:D0OTHER", {"channel": "slack", "sender": "U0OTHER"}, "1-0",
                                    "shopper", "hi", 1.0)]  # fmt: skip
    assert rows[0]["shopper"] == "U0SHOPPER9"
    with engine.begin() as conn:
        conn.execute(transcripts.messages.insert(), rows)
    slack_cids = privacy.conversations_of(store, engine, "slack", "U0SHOPPER9")
    assert slack_cids == ["slack:T0SHOP:C0GEN.U0SHOPPER9", "slack:T0SHOP:D0DMSHOP9"]
    assert privacy.conversations_of(store, engine, "web", *web.shopper_ids("web", sid)) == [web.conversation_id(sid)]

    # A flusher holds the list: forgetting waits for it, and says so when it cannot.
    r = store.r
    r.delete(TRANSCRIPTS)
    queued = [json.dumps({"conversation_id": c, "message_id": "2-0"}) for c in (*slack_cids, "telegram:default:7")]
    r.rpush(TRANSCRIPTS, *queued)
    flusher = r.lock(TRANSCRIPTS_LOCK, timeout=60)
    assert flusher.acquire(blocking=False)
    with pytest.raises(privacy.PrivacyError) as busy:
        privacy.forget(store, engine, slack_cids, lock_wait_s=0.2)
    assert busy.value.status == 409 and r.lrange(TRANSCRIPTS, 0, -1) == queued
    flusher.release()
    counts = privacy.forget(store, engine, slack_cids)
    assert counts["queued_rows"] == 2 and counts["transcript_rows"] == 2
    assert r.lrange(TRANSCRIPTS, 0, -1) == [queued[-1]]  # the other conversation's row stays
    r.delete(TRANSCRIPTS)


def test_moving_a_bot_to_another_api_address_needs_its_token_again(tmp_path):
    from admin.credentials import CredentialError, CredentialStore
    from admin.crypto import SecretBox
    from shopbot import db
    from shopbot.settings import Settings

    store = CredentialStore(
        db.engine_for(f"sqlite:///{tmp_path / 'creds.db'}"), SecretBox(b"k" * 32), Settings(_env_file=None)
    )
    token = "123456:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQr"
    store.set("telegram", "shop", {"bot_token": token, "api_base_url": "http://127.0.0.1:9001"}, "alice")
    # Pointing the stored token at another host without knowing it: refused (it would be sent there).
    with pytest.raises(CredentialError, match="needs the bot_token again"):
        store.set("telegram", "shop", {"api_base_url": "https://attacker.example"}, "mallory")
    assert store.secrets_of("telegram", "shop")[1]["api_base_url"] == "http://127.0.0.1:9001"
    # With the token, or changing something else, it goes through.
    store.set("telegram", "shop", {"bot_token": token, "api_base_url": "http://127.0.0.1:9002"}, "alice")
    store.set("telegram", "shop", {"webhook_secret": "x" * 32}, "alice")
    assert store.secrets_of("telegram", "shop")[1]["api_base_url"] == "http://127.0.0.1:9002"


def test_a_session_nobody_writes_in_expires_soon_and_a_message_gives_it_the_full_time(redis_server):
    from shopbot.store import ConversationStore, key

    store = ConversationStore.from_url(redis_server.url, ttl_s=30 * 24 * 3600, empty_ttl_s=3600)
    quiet, talking = "web:default:ttl-quiet", "web:default:ttl-talking"
    for cid in (quiet, talking):
        store.create(cid, {"channel": "web"})
    assert 0 < store.r.ttl(key(quiet, "meta")) <= 3600
    store.record_inbound(talking, "hello")
    assert store.r.ttl(key(talking, "meta")) > 29 * 24 * 3600
    store.create(talking, {"channel": "web"})  # a session created again never shortens a conversation
    assert store.r.ttl(key(talking, "meta")) > 29 * 24 * 3600


def test_a_long_conversation_keeps_its_newest_messages_and_nothing_not_yet_handled_or_sent(redis_server):
    from shopbot.store import ConversationStore, Outgoing, key

    store = ConversationStore.from_url(redis_server.url, log_cap=50)  # trims once the log passes 55
    web, tg = "web:default:cap-web", "telegram:shop:cap-tg"

    # Nothing handled yet: every message stays, however many.
    mids = [store.record_inbound(web, f"m{i}", client_message_id=f"c{i}")[0] for i in range(80)]
    assert store.r.xlen(key(web, "log")) == 80
    # The dialogue handles them, answering each: the log drops to the newest 50 as it goes.
    for mid in mids:
        with store.lock(web) as token:
            store.save_annotations([(web, mid, {"intent": "x"})])
            store.commit(web, token, {}, [Outgoing("bot", f"re {mid}")], consume=mid)
    assert 50 <= store.r.xlen(key(web, "log")) <= 55
    kept = store.messages_after(web)
    assert kept[-1].text == f"re {mids[-1]}"  # the newest stay, in order
    assert [e.id for e in kept] == sorted(e.id for e in kept)
    assert all(e.sender == "bot" for e in kept)  # the 80 replies are the newest
    assert all(store.annotation(web, m) is None for m in mids)  # the trimmed messages' annotations went too
    assert not store.r.hexists(key(web, "dedup"), "c0")  # and their dedup entries
    last = store.record_inbound(web, "one more", client_message_id="c80")[0]
    with store.lock(web) as token:
        store.save_annotations([(web, last, {"intent": "x"})])
        store.commit(web, token, {}, [Outgoing("bot", "re one more")], consume=last)
    assert store.annotation(web, last) is not None and store.r.hexists(key(web, "dedup"), "c80")
    assert store.record_inbound(web, "one more", client_message_id="c80") == (last, True)

    # A push platform: what was not sent to the shopper's chat yet stays until it is.
    first = store.record_inbound(tg, "hi")[0]
    with store.lock(tg) as token:
        store.commit(tg, token, {}, [Outgoing("bot", "hello")], consume=first)
    store.set_cursor(tg, "shopper", store.messages_after(tg)[-1].id)
    for i in range(70):
        store.record_reply(tg, f"agent-{i}", Outgoing("agent", f"a{i}"), {"channel": "telegram"})
    # Only what was sent goes ("hi"); none of the agent's replies went out yet, so they all stay.
    assert [e.text for e in store.messages_after(tg)] == ["hello"] + [f"a{i}" for i in range(70)]
    unsent = store.messages_after(tg, store.cursor(tg, "shopper"))
    store.set_cursor(tg, "shopper", unsent[-1].id)  # all sent: the next message trims
    store.record_reply(tg, "agent-70", Outgoing("agent", "a70"), {"channel": "telegram"})
    assert store.r.xlen(key(tg, "log")) <= 55
    assert store.messages_after(tg)[-1].text == "a70"

    # The agents' thread: while the card is queued or taken, what it has not mirrored stays; once the
    # conversation is resolved, its card's cursor holds nothing back.
    desk = "web:default:cap-desk"
    first = store.record_inbound(desk, "help")[0]
    store.save_desk_card(desk, {"ts": "1.2", "channel": "C1", "shown": "agent|alice|None/0|1", "cursor": first})
    for i in range(70):
        store.record_inbound(desk, f"s{i}", client_message_id=f"d{i}")
    assert store.r.xlen(key(desk, "log")) == 71  # all unhandled anyway: the inbox holds them
    with store.lock(desk) as token:
        for mid in store.inbox(desk):
            store.commit(desk, token, {}, consume=mid)
    store.record_reply(desk, "agent-1", Outgoing("agent", "hello"), {"channel": "web"})
    assert store.r.xlen(key(desk, "log")) == 72  # the thread has not had them: they stay
    store.save_desk_card(desk, {"shown": "resolved|alice|None/0|1"})
    store.record_reply(desk, "agent-2", Outgoing("agent", "bye"), {"channel": "web"})
    assert store.r.xlen(key(desk, "log")) <= 55


def _queued_slack_conversation(r: redis.Redis, cid: str, sender: str) -> None:
    """A Slack shopper's conversation waiting in the human queue, as the dialogue worker leaves it."""
    state = {"status": "queued", "priority": 3, "handoff_reason": "refund_dispute", "queued_at": time.time() - 30}
    r.set(f"sb:conv:{{{cid}}}:state", json.dumps(state))
    r.hset(f"sb:conv:{{{cid}}}:meta", mapping={"channel": "slack", "sender": sender})
    r.zadd("sb:handoff:queue", {cid: 1.0})


async def test_a_slack_app_learns_its_workspace_and_the_desk_refuses_every_other(admin_gw, platforms):
    """A Slack app saved without a team_id learns it from auth.test; then a desk action whose payload names
    another workspace (slash command, button, note modal, reply in a card's thread) is refused politely and
    audited with the Slack user id, even from a member of the agents' channel; from the desk's own
    workspace the same member's claim goes through."""
    url, env, admin = admin_gw["url"], admin_gw["env"], admin_gw["admin"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    cid, card_ts = "slack:T0SHOP:D0WORKSPACE1", "1700000001.000100"
    _queued_slack_conversation(r, cid, "U0SHOPPER5")
    r.set(f"sb:desk:thread:{card_ts}", cid)  # the card's thread is this conversation (as the worker records it)

    def status_of() -> str:
        return json.loads(r.get(f"sb:conv:{{{cid}}}:state") or "{}").get("status")

    async with aiohttp.ClientSession() as http:
        values = {"bot_token": SLACK_TOKEN, "signing_secret": DESK_SECRET, "agent_channel": AGENT_CHANNEL}
        status, entry, _ = await call(http, "PUT", f"{url}/admin/api/channels/slack/desk", admin, values)
        assert status == 201 and entry["team_id"] == "T0SHOP" and entry["checked"]["ok"], entry
        status, listed, _ = await call(http, "GET", f"{url}/admin/api/channels", admin)
        assert {"name": "desk", "team_id": "T0SHOP"}.items() <= next(
            c for c in listed["channels"] if c["platform"] == "slack"
        ).items()
        try:
            foreign = {**command(f"claim {cid}"), "team_id": "T0OTHER"}
            status, text = await slack_post(http, url, "commands", form=foreign, secret=DESK_SECRET)
            assert status == 200 and "Only the shop's agents" in text, text
            press = action("block_actions_claim", cid, card_ts)
            press["payload"]["team"]["id"] = "T0OTHER"
            status, _ = await slack_post(http, url, "interactions", form=press, secret=DESK_SECRET)
            assert status == 200
            note = json.loads(json.dumps(fixture("slack", "view_submission_note")["form"]["payload"]))
            note["team"]["id"] = "T0OTHER"
            note["view"]["private_metadata"] = cid
            note["view"]["state"]["values"]["note"]["text"]["value"] = "from elsewhere"
            status, text = await slack_post(http, url, "interactions", form={"payload": note}, secret=DESK_SECRET)
            assert status == 200 and "errors" in text and "Only the shop's agents" in text, text
            reply = slack_event("agent_thread_reply", thread_ts=card_ts, ts=f"{time.time():.6f}", text="hello")
            reply["team_id"] = "T0OTHER"
            status, _ = await slack_post(http, url, "events", json_body=reply, secret=DESK_SECRET)
            assert status == 200
            assert status_of() == "queued"
            assert not [m for m in r.xrange(f"sb:conv:{{{cid}}}:log") if "hello" in json.dumps(m)]

            status, text = await slack_post(http, url, "commands", form=command(f"claim {cid}"), secret=DESK_SECRET)
            assert status == 200 and "Done" in text, text
            assert status_of() == "agent"
        finally:
            status, _, _ = await call(http, "DELETE", f"{url}/admin/api/channels/slack/desk", admin)
            assert status == 200
            r.zrem("sb:handoff:queue", cid)
        status, audit, _ = await call(http, "GET", f"{url}/admin/api/audit?limit=200", admin)
    mine = [e for e in audit["entries"] if e["actor"] == "slack:U0AGENT1" and e["target"] == cid]
    refused = [e["action"] for e in mine if e["outcome"] == "refused: another workspace"]
    assert sorted(refused) == ["desk.claim", "desk.claim", "desk.note", "desk.reply"], mine
    assert [e["action"] for e in mine if e["outcome"] == "ok"] == ["desk.claim"]
    assert any(
        e["action"] == "channel.set" and (e.get("detail") or {}).get("team_id") == "T0SHOP" for e in audit["entries"]
    )


async def test_with_no_desk_agents_listed_only_the_agents_channel_members_work_the_desk(admin_gw, platforms):
    """ "The agents" are the agents' channel's members, as Slack's conversations.members says (every page
    of it), asked at most once a minute: a non-member pressing Claim in that channel is refused, a member
    on the list's second page claims. When Slack cannot say, even a member is refused, politely."""
    url, env, admin = admin_gw["url"], admin_gw["env"], admin_gw["admin"]
    slack_api = platforms["slack"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    cid, card_ts = "slack:T0SHOP:D0MEMBERS1", "1700000002.000100"
    _queued_slack_conversation(r, cid, "U0SHOPPER6")
    for k in r.scan_iter("sb:slack:members:*"):
        r.delete(k)  # nothing cached from another test: the first click asks Slack

    def status_of() -> str:
        return json.loads(r.get(f"sb:conv:{{{cid}}}:state") or "{}").get("status")

    async def claim(user: str) -> None:
        status, _ = await slack_post(http, url, "interactions", form=action("block_actions_claim", cid, card_ts, user))
        assert status == 200

    before = len(slack_api.calls)
    slack_api.members_page = 2  # UBOT, U0AGENT1 | U0AGENT2: two pages
    slack_api.fail_next["conversations.members"] = 1  # rate limited (429) once
    try:
        async with aiohttp.ClientSession() as http:
            await claim("U0AGENT1")  # a member, but Slack could not be asked
            assert status_of() == "queued"
            await claim("U0OUTSIDER")  # can see the channel and press the button, is not in it
            assert status_of() == "queued"
            asked = [c for c in slack_api.calls[before:] if c.method == "conversations.members"]
            assert [c.status for c in asked] == [429, 200, 200]
            pages = asked[1:]
            assert [c.params["channel"] for c in pages] == [AGENT_CHANNEL, AGENT_CHANNEL]
            assert "cursor" not in pages[0].params and pages[1].params["cursor"]
            await claim("U0AGENT2")  # on the second page
            assert status_of() == "agent"
            assert len([c for c in slack_api.calls[before:] if c.method == "conversations.members"]) == 3  # cached
            status, audit, _ = await call(http, "GET", f"{url}/admin/api/audit?limit=200", admin)
    finally:
        slack_api.members_page = 1000
        slack_api.fail_next.pop("conversations.members", None)
        r.zrem("sb:handoff:queue", cid)
    claims = [(e["actor"], e["outcome"]) for e in reversed(audit["entries"]) if e["target"] == cid]
    assert claims == [
        ("slack:U0AGENT1", "refused: membership not checked"),
        ("slack:U0OUTSIDER", "refused: not a desk agent"),
        ("slack:U0AGENT2", "ok"),
    ], claims
    log = admin_gw["log"].read_text()
    assert "the agents' channel's members are unknown" in log and SLACK_TOKEN not in log


def test_a_conversation_that_expired_while_queued_leaves_the_queue(redis_server):
    import json

    from dialogue import load_policy
    from handoff.queue import HandoffQueue
    from shopbot.store import HANDOFF_QUEUE, ConversationStore, key

    store = ConversationStore.from_url(redis_server.url)
    queue = HandoffQueue(store, load_policy())
    live, gone = "web:default:q-live", "web:default:q-gone"
    state = {"status": "queued", "priority": 3, "handoff_reason": "requested", "queued_at": 1.0}
    for cid in (live, gone):
        store.r.set(key(cid, "state"), json.dumps(state))
        store.r.zadd(HANDOFF_QUEUE, {cid: 1.0})
    store.r.delete(key(gone, "state"))  # its TTL ran out while it waited
    assert [i.conversation_id for i in queue.waiting(last_messages=0)] == [live]
    assert store.r.zscore(HANDOFF_QUEUE, gone) is None and store.r.zscore(HANDOFF_QUEUE, live) is not None
    store.r.zrem(HANDOFF_QUEUE, live)


def test_the_desk_takes_only_its_agents_from_the_agents_channel(tmp_path):
    from admin.credentials import CredentialError, CredentialStore, SlackApp
    from admin.crypto import SecretBox
    from gateway.slack_routes import NOT_DESK_AGENT, OTHER_WORKSPACE, _desk_refusal
    from shopbot import db
    from shopbot.settings import Settings

    # (Membership of the agents' channel is asked from Slack when no desk_agents are listed: test_platforms.)
    open_desk = SlackApp("shop", "xoxb-1", "s" * 16, "C0AGENTS", "http://127.0.0.1:1/api/")
    assert _desk_refusal(open_desk, "U0ANYONE", "C0AGENTS") is None  # then: is U0ANYONE in the channel?
    assert _desk_refusal(open_desk, "U0ANYONE", "D0SHOPPER") == NOT_DESK_AGENT  # a DM: a shopper, say
    listed = SlackApp("shop", "xoxb-1", "s" * 16, "C0AGENTS", "http://127.0.0.1:1/api/", ("U0ANNA",))
    assert _desk_refusal(listed, "U0ANNA", "C0AGENTS") is None
    assert _desk_refusal(listed, "U0BOB", "C0AGENTS") == NOT_DESK_AGENT  # in the channel, not on the list
    no_desk = SlackApp("shop", "xoxb-1", "s" * 16, None, "http://127.0.0.1:1/api/")
    assert _desk_refusal(no_desk, "U0ANNA", "C0AGENTS") == NOT_DESK_AGENT
    # With its workspace known, the desk takes only that workspace's requests (none that name no team).
    in_team = SlackApp("shop", "xoxb-1", "s" * 16, "C0AGENTS", "http://127.0.0.1:1/api/", ("U0ANNA",), "T0SHOP")
    assert _desk_refusal(in_team, "U0ANNA", "C0AGENTS", "T0SHOP") is None
    assert _desk_refusal(in_team, "U0ANNA", "C0AGENTS", "T0OTHER") == OTHER_WORKSPACE
    assert _desk_refusal(in_team, "U0ANNA", "C0AGENTS", None) == OTHER_WORKSPACE
    assert _desk_refusal(listed, "U0ANNA", "C0AGENTS", "T0OTHER") is None  # no team known: as before
    assert OTHER_WORKSPACE.text == NOT_DESK_AGENT.text and OTHER_WORKSPACE.outcome != NOT_DESK_AGENT.outcome

    store = CredentialStore(
        db.engine_for(f"sqlite:///{tmp_path / 'creds.db'}"), SecretBox(b"k" * 32), Settings(_env_file=None)
    )
    values = {"bot_token": "xoxb-123-456-abcdef", "signing_secret": "s" * 16, "agent_channel": "C0AGENTS"}
    store.set("slack", "shop", {**values, "desk_agents": "U0ANNA, U0BOB,U0ANNA"}, "admin")
    assert store.secrets_of("slack", "shop")[1]["desk_agents"] == ["U0ANNA", "U0BOB"]
    assert store.snapshot().slack[0].desk_agents == ("U0ANNA", "U0BOB")
    with pytest.raises(CredentialError, match="not a Slack user id"):
        store.set("slack", "shop", {"desk_agents": ["anna"]}, "admin")
    with pytest.raises(CredentialError, match="team_id is a workspace"):
        store.set("slack", "shop", {"team_id": "shop.slack.com"}, "admin")
    store.set("slack", "shop", {"team_id": "T0SHOP"}, "admin")
    assert store.snapshot().slack[0].team_id == "T0SHOP"
    env = Settings(_env_file=None, slack_bot_token="xoxb-1-2-abcdef", slack_signing_secret="s" * 16,
                   slack_team_id="T0ENV")  # fmt: skip
    assert CredentialStore(store.engine, store.box, env).listing()[-1]["team_id"] == "T0SHOP"  # stored wins
    store.remove("slack", "shop")
    assert CredentialStore(store.engine, store.box, env).snapshot().slack[0].team_id == "T0ENV"


def test_the_start_command_keeps_its_files_private_and_redis_behind_a_password(tmp_path):
    import stat
    from pathlib import Path

    from shopbot import start

    var = tmp_path / "var"
    (var / "redis").mkdir(parents=True)
    earlier = var / "gateway.log"  # left world-readable by an earlier version
    earlier.write_text("a log line\n")
    earlier.chmod(0o644)
    (var / "redis").chmod(0o755)
    start.private_dir(var)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700 and stat.S_IMODE((var / "redis").stat().st_mode) == 0o700
    assert stat.S_IMODE(earlier.stat().st_mode) == 0o600
    procs: list = []
    url = start.start_local_redis(procs, var)
    try:
        password = (var / "redis.password").read_text().strip()
        assert len(password) >= 24 and f":{password}@127.0.0.1:" in url
        for secret in (var / "redis.password", var / "redis" / "redis.conf"):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        # Not on the command line, where every user of the machine can read it.
        assert password not in Path(f"/proc/{procs[0].pid}/cmdline").read_bytes().decode()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port).ping()
        assert redis.Redis.from_url(url).ping()
        # A second start keeps the password (clients configured with it keep working).
        assert start._secret_file(var / "redis.password", lambda: "another") == password
    finally:
        procs[0].terminate()
        procs[0].wait(10)


def test_compose_puts_redis_behind_a_password_every_service_uses():
    from pathlib import Path

    import yaml

    compose = yaml.safe_load((Path(__file__).parent.parent / "docker-compose.yml").read_text())
    needed = "${SHOPBOT_REDIS_PASSWORD:?"  # compose stops with this message when the password is not set
    redis_svc = compose["services"].pop("redis")
    assert redis_svc["command"][redis_svc["command"].index("--requirepass") + 1].startswith(needed)
    assert redis_svc["environment"]["REDISCLI_AUTH"].startswith(needed)  # the health check authenticates
    assert "ports" not in redis_svc  # and Redis is not published on the host
    # The database is PostgreSQL, a service of its own that every process shares (not one SQLite file).
    pg = compose["services"].pop("postgres")
    assert pg["image"].startswith("postgres:") and "ports" not in pg
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${SHOPBOT_POSTGRES_PASSWORD:?")
    db_url = compose["x-shopbot"]["environment"]["SHOPBOT_DATABASE_URL"]
    assert (
        db_url.startswith("postgresql+psycopg://shopbot:${SHOPBOT_POSTGRES_PASSWORD:?") and "@postgres:5432/" in db_url
    )
    assert {"redis", "postgres"} <= set(compose["x-shopbot"]["depends_on"])
    for name, svc in compose["services"].items():
        url = {**compose["x-shopbot"]["environment"], **(svc.get("environment") or {})}["SHOPBOT_REDIS_URL"]
        assert url.startswith("redis://:" + needed), name
