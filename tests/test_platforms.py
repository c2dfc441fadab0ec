"""Telegram and Slack shoppers and the Slack agents' desk, end to end.

The real gateway and workers (tests/conftest.py: product) talk to local servers
that speak the Telegram Bot API and the Slack Web API (tests/platforms.py); the
webhooks, events and interactions posted here are the recorded payloads in
tests/fixtures, with their headers and fresh signatures.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from platforms import form_body, slack_headers
from services import AGENT_CHANNEL, SLACK_CLIENT_ID, SLACK_SECRET, TELEGRAM_SECRET, admin_cli
from test_channels import fixture

pytestmark = pytest.mark.slow
_update_ids = itertools.count(900_000_000)
_event_ids = itertools.count(1)
STATE_COOKIE = "slack-app-oauth-state"  # bolt's: the browser that started an install must finish it


class TelegramShopper:
    def __init__(self, http: aiohttp.ClientSession, product: dict, platforms: dict, user_id: int, lang: str = "en"):
        self.http, self.url, self.api = http, product["url"], platforms["telegram"]
        self.user_id, self.lang = user_id, lang
        self.cid = f"telegram:123456:{user_id}"
        self.seen = 0

    def update(self, text: str | None = None, name: str = "text_message", update_id: int | None = None) -> dict:
        body = copy.deepcopy(fixture("telegram", name)["body"])
        body["update_id"] = update_id or next(_update_ids)
        msg = body.get("message") or body.get("edited_message") or body["callback_query"]["message"]
        holder = body["callback_query"] if "callback_query" in body else msg
        holder["from"] = {**holder["from"], "id": self.user_id, "language_code": self.lang}
        msg["chat"] = {**msg["chat"], "id": self.user_id}
        if text is not None:
            msg["text"] = text
        return body

    async def post(self, body: dict, secret: str | None = TELEGRAM_SECRET) -> aiohttp.ClientResponse:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with self.http.post(f"{self.url}/channels/telegram/webhook", json=body, headers=headers) as r:
            await r.read()
            return r

    async def say(self, text: str) -> dict:
        body = self.update(text)
        r = await self.post(body)
        assert r.status == 200
        return body

    def sent(self) -> list[str]:
        return [c.params["text"] for c in self.api.of("sendMessage") if int(c.params["chat_id"]) == self.user_id]

    async def next_reply(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while len(self.sent()) <= self.seen:
            assert time.monotonic() < deadline, f"no reply on Telegram; sent so far: {self.sent()}"
            await asyncio.sleep(0.05)
        self.seen += 1
        return self.sent()[self.seen - 1]


async def slack_post(http, url: str, path: str, *, json_body=None, form=None, headers=None, secret=SLACK_SECRET):
    body = json.dumps(json_body).encode() if json_body is not None else form_body(**form)
    ctype = "application/json" if json_body is not None else "application/x-www-form-urlencoded"
    h = {"Content-Type": ctype, **(slack_headers(secret, body) if secret else {}), **(headers or {})}
    async with http.post(f"{url}/channels/slack/{path}", data=body, headers=h) as r:
        return r.status, await r.text()


def slack_event(name: str, **event_fields) -> dict:
    body = copy.deepcopy(fixture("slack", name)["body"])
    body["event_id"] = f"Ev0TEST{next(_event_ids):05d}"
    body["event"].update(event_fields)
    return body


def action(name: str, cid: str, card_ts: str, user: str = "U0AGENT1", action_id: str | None = None) -> dict:
    payload = copy.deepcopy(fixture("slack", name)["form"]["payload"])
    payload["user"]["id"] = user
    payload["message"]["ts"] = payload["container"]["message_ts"] = card_ts
    payload["actions"][0]["value"] = cid
    payload["actions"][0]["action_ts"] = f"{time.time():.6f}"
    if action_id:
        payload["actions"][0]["action_id"] = action_id
    return {"payload": payload}


def command(text: str, user: str = "U0AGENT1") -> dict:
    return {**fixture("slack", "slash_command")["form"], "text": text, "user_id": user}


def admin_token(gw: dict) -> str:
    """An admin token for a gateway handle (made once by the CLI, as an operator does)."""
    if "admin" not in gw:
        made = admin_cli(gw["env"], "tokens", "create", "--name", "platforms admin", "--role", "admin")
        assert made.returncode == 0, made.stderr
        gw["admin"] = made.stdout.strip().splitlines()[-1]
    return gw["admin"]


async def install_link(http: aiohttp.ClientSession, url: str, admin: str) -> str:
    """The one-time "Add to Slack" link the admin page asks for (admin token)."""
    headers = {"Authorization": f"Bearer {admin}"}
    async with http.post(f"{url}/admin/api/slack/install-link", headers=headers) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["url"]


async def start_install(http: aiohttp.ClientSession, url: str, admin: str) -> tuple[str, dict[str, list[str]], str]:
    """An admin's click on "Add to Slack" (the admin page's one-time link): the redirect to Slack's authorize
    page, its query, and the state cookie the browser keeps."""
    link = await install_link(http, url, admin)
    assert link.startswith(f"{url}/channels/slack/install?ticket="), link
    async with http.get(link, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        location = r.headers["Location"]
        cookie = r.cookies[STATE_COOKIE].value
    return location, parse_qs(urlsplit(location).query), cookie


async def callback(http: aiohttp.ClientSession, url: str, state: str | None, code: str | None, cookie: str | None):
    query = {k: v for k, v in (("state", state), ("code", code)) if v is not None}
    headers = {"Cookie": f"{STATE_COOKIE}={cookie}"} if cookie else {}
    async with http.get(f"{url}/channels/slack/oauth_redirect", params=query, headers=headers) as r:
        return r.status, await r.text()


async def card_of(slack_api, cid: str) -> str:
    """The ts of the hand-off card posted for ``cid`` (its thread is the conversation)."""
    call = await slack_api.wait_for(
        "chat.postMessage", lambda c: c.params.get("channel") == AGENT_CHANNEL and cid in json.dumps(c.params)
    )
    assert "desk_claim" in json.dumps(call.params["blocks"])
    return call.result["ts"]


async def thread_post(slack_api, card_ts: str, needle: str) -> dict:
    call = await slack_api.wait_for(
        "chat.postMessage", lambda c: c.params.get("thread_ts") == card_ts and needle in c.params.get("text", "")
    )
    return call.params


async def test_telegram_shopper_with_a_handoff_worked_from_the_slack_desk(product, platforms):
    slack_api, url = platforms["slack"], product["url"]
    async with aiohttp.ClientSession() as http:
        shopper = TelegramShopper(http, product, platforms, 5012340001)
        first = await shopper.say("where is my order")
        assert "order number" in (await shopper.next_reply()).lower()
        for _ in range(2):  # Telegram resends an update until it gets a 200
            assert (await shopper.post(first)).status == 200
        await shopper.say("it is 10023")
        assert "10023" in await shopper.next_reply()
        assert len(shopper.sent()) == 2, shopper.sent()  # the resent update got no second reply

        await shopper.say("I want to talk to a human agent")
        assert "human" in (await shopper.next_reply()).lower()
        card_ts = await card_of(slack_api, shopper.cid)
        card = next(c for c in slack_api.of("chat.postMessage") if c.result.get("ts") == card_ts)
        blocks = json.dumps(card.params["blocks"])
        assert "telegram" in blocks and "10023" in blocks and "contact_human_agent" in blocks

        status, _ = await slack_post(
            http, url, "interactions", form=action("block_actions_claim", shopper.cid, card_ts)
        )
        assert status == 200
        assert "agent" in (await shopper.next_reply()).lower()
        await slack_api.wait_for(
            "chat.update", lambda c: c.params["ts"] == card_ts and "<@U0AGENT1>" in json.dumps(c.params)
        )
        # A second agent cannot take it; they are told so, privately.
        await slack_post(
            http, url, "interactions", form=action("block_actions_claim", shopper.cid, card_ts, "U0AGENT2")
        )
        refusal = await slack_api.wait_for("chat.postEphemeral", lambda c: c.params["user"] == "U0AGENT2")
        assert "already claimed" in refusal.params["text"]

        # The shopper's messages appear in the card's thread; the bot stays silent.
        await shopper.say("hello, is anyone there?")
        await thread_post(slack_api, card_ts, "hello, is anyone there?")
        # The agent's reply in the thread reaches the shopper on Telegram.
        reply = slack_event("agent_thread_reply", thread_ts=card_ts, ts=f"{time.time():.6f}")
        status, _ = await slack_post(http, url, "events", json_body=reply)
        assert status == 200
        assert (await shopper.next_reply()).startswith("Agent: Hi, I'm Anna")
        # An internal note (the card's modal) stays in Slack.
        note = copy.deepcopy(fixture("slack", "view_submission_note")["form"]["payload"])
        note["view"]["private_metadata"] = shopper.cid
        note["view"]["state"]["values"]["note"]["text"]["value"] = "VIP shopper, refund approved"
        status, _ = await slack_post(http, url, "interactions", form={"payload": note})
        assert status == 200
        await thread_post(slack_api, card_ts, "VIP shopper, refund approved")

        status, _ = await slack_post(
            http,
            url,
            "interactions",
            form=action("block_actions_claim", shopper.cid, card_ts, action_id="desk_resolve"),
        )
        assert status == 200
        assert "closed" in (await shopper.next_reply()).lower()
        await slack_api.wait_for(
            "chat.update", lambda c: c.params["ts"] == card_ts and "Resolved" in json.dumps(c.params)
        )
        await shopper.say("where is my order")
        await shopper.next_reply()
        assert not [t for t in shopper.sent() if "VIP" in t]
        assert len(shopper.sent()) == shopper.seen  # nothing more than what was awaited one by one


async def test_slack_shopper_with_a_handoff_worked_by_slash_commands(product, platforms):
    slack_api, url = platforms["slack"], product["url"]

    def to_shopper(channel: str) -> list[str]:
        return [c.params["text"] for c in slack_api.of("chat.postMessage") if c.params.get("channel") == channel]

    async def wait_count(channel: str, n: int) -> list[str]:
        deadline = time.monotonic() + 60
        while len(to_shopper(channel)) < n:
            assert time.monotonic() < deadline, to_shopper(channel)
            await asyncio.sleep(0.05)
        return to_shopper(channel)

    dm, cid = "D0SLACKSHOP1", "slack:T0SHOP:D0SLACKSHOP1"
    async with aiohttp.ClientSession() as http:
        first = slack_event("message_im", channel=dm, user="U0SHOPPER1", text="where is my order")
        status, _ = await slack_post(http, url, "events", json_body=first)
        assert status == 200
        assert "order number" in (await wait_count(dm, 1))[0].lower()
        # Slack retries an event it thinks we missed: same event id, a retry header, a new signature.
        status, _ = await slack_post(http, url, "events", json_body=first, headers={"X-Slack-Retry-Num": "1"})
        assert status == 200
        hand = slack_event("message_im", channel=dm, user="U0SHOPPER1", text="I want to talk to a human agent")
        await slack_post(http, url, "events", json_body=hand)
        assert "human" in (await wait_count(dm, 2))[1].lower()
        assert len(to_shopper(dm)) == 2, to_shopper(dm)  # the retry got no second reply

        # The shopper talks to the same Slack app: signed requests, but no agent. The desk refuses them
        # (from their DM, or with a button pressed anywhere but the agents' channel), politely.
        for text in ("queue", f"claim {cid}", f"note {cid} hi", f"resolve {cid}"):
            mine = {**command(text, user="U0SHOPPER1"), "channel_id": dm, "channel_name": "directmessage"}
            status, answer = await slack_post(http, url, "commands", form=mine)
            assert status == 200 and "Only the shop's agents" in answer and cid not in answer, answer
        press = action("block_actions_claim", cid, "1700000000.000100", user="U0SHOPPER1")
        press["payload"]["channel"] = {"id": dm, "name": "directmessage"}
        status, _ = await slack_post(http, url, "interactions", form=press)
        assert status == 200
        told = await slack_api.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0SHOPPER1")
        assert "Only the shop's agents" in told.params["text"]
        assert await asyncio.to_thread(lambda: product_queue_status(product, cid)) == "queued"

        status, text = await slack_post(http, url, "commands", form=command("queue"))
        assert status == 200 and cid in text
        card_ts = await card_of(slack_api, cid)
        # Someone who sees the agents' channel but is not a member of it (conversations.members) presses Claim.
        press = action("block_actions_claim", cid, card_ts, user="U0OUTSIDER")
        status, _ = await slack_post(http, url, "interactions", form=press)
        assert status == 200
        told = await slack_api.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0OUTSIDER")
        assert "Only the shop's agents" in told.params["text"] and told.params["channel"] == AGENT_CHANNEL
        assert await asyncio.to_thread(lambda: product_queue_status(product, cid)) == "queued"
        status, text = await slack_post(http, url, "commands", form=command(f"claim {cid}"))
        assert status == 200 and "Done" in text
        assert "agent" in (await wait_count(dm, 3))[2].lower()
        status, text = await slack_post(http, url, "commands", form=command(f"claim {cid}", user="U0AGENT2"))
        assert "already claimed" in text

        # The app is installed in another workspace too: a reply in the thread from there is refused.
        foreign = slack_event("agent_thread_reply", thread_ts=card_ts, ts=f"{time.time():.6f}", text="Not from us.")
        foreign["team_id"] = "T0OTHER"
        await slack_post(http, url, "events", json_body=foreign)
        told = await slack_api.wait_for(
            "chat.postEphemeral", lambda c: c.params.get("thread_ts") == card_ts and c.params.get("user") == "U0AGENT1"
        )
        assert "Only the shop's agents" in told.params["text"]
        reply = slack_event(
            "agent_thread_reply", thread_ts=card_ts, ts=f"{time.time():.6f}", text="Your parcel left today."
        )
        await slack_post(http, url, "events", json_body=reply)
        assert (await wait_count(dm, 4))[3] == "Agent: Your parcel left today."
        status, text = await slack_post(http, url, "commands", form=command(f"note {cid} shopper called twice before"))
        assert "Done" in text
        await thread_post(slack_api, card_ts, "shopper called twice before")
        status, text = await slack_post(http, url, "commands", form=command(f"resolve {cid}"))
        assert "Done" in text
        assert "closed" in (await wait_count(dm, 5))[4].lower()
        assert not [t for t in to_shopper(dm) if "called twice" in t]
    # Every desk action, done or refused, is in the audit log with the Slack user id.
    entries = await asyncio.to_thread(audit_entries, product)
    done = {(e["actor"], e["action"]) for e in entries if e["outcome"] == "ok"}
    assert {
        ("slack:U0AGENT1", "desk.claim"),
        ("slack:U0AGENT1", "desk.note"),
        ("slack:U0AGENT1", "desk.resolve"),
        ("slack:U0AGENT1", "desk.reply"),
    } <= done
    refused = {e["action"] for e in entries if e["actor"] == "slack:U0SHOPPER1" and e["outcome"].startswith("refused")}
    assert {"desk.queue", "desk.claim", "desk.note", "desk.resolve"} <= refused
    outcomes = {(e["actor"], e["action"], e["outcome"]) for e in entries if e["target"] == cid}
    assert ("slack:U0OUTSIDER", "desk.claim", "refused: not a desk agent") in outcomes
    assert ("slack:U0AGENT1", "desk.reply", "refused: another workspace") in outcomes
    assert any(e["actor"] == "slack:U0AGENT2" and "already claimed" in e["outcome"] for e in entries)


def audit_entries(product) -> list[dict]:
    from admin.access import AuditLog
    from shopbot import db

    return AuditLog(db.engine_for(product["env"]["SHOPBOT_DATABASE_URL"])).entries(500)


def product_queue_status(product, cid: str) -> str | None:
    import redis

    r = redis.Redis.from_url(product["redis_url"], decode_responses=True)
    raw = r.get(f"sb:conv:{{{cid}}}:state")
    return json.loads(raw).get("status") if raw else None


async def test_two_people_mentioning_the_bot_in_one_channel_have_a_conversation_each(product, platforms):
    """In a shared channel, the second person is not the first: their own conversation, their
    own order context, and replies (order details, buttons) only they can see."""
    slack_api, url, channel = platforms["slack"], product["url"], "C0SHARED1"

    def ephemeral(user: str) -> list[str]:
        return [
            c.params["text"]
            for c in slack_api.of("chat.postEphemeral")
            if c.params.get("channel") == channel and c.params.get("user") == user
        ]

    async def wait_for(user: str, n: int) -> list[str]:
        deadline = time.monotonic() + 60
        while len(ephemeral(user)) < n:
            assert time.monotonic() < deadline, ephemeral(user)
            await asyncio.sleep(0.05)
        return ephemeral(user)

    async with aiohttp.ClientSession() as http:
        first = slack_event("app_mention", channel=channel, user="U0FIRST1", text="<@U0BOT> where is order 10023?")
        assert (await slack_post(http, url, "events", json_body=first))[0] == 200
        assert "10023" in (await wait_for("U0FIRST1", 1))[0]
        second = slack_event("app_mention", channel=channel, user="U0SECOND", text="<@U0BOT> where is my order?")
        assert (await slack_post(http, url, "events", json_body=second))[0] == 200
        # The second person is asked for their own order number: the first one's order is not theirs.
        answer = (await wait_for("U0SECOND", 1))[0]
        assert "10023" not in answer and "order number" in answer.lower(), answer
    assert not [c for c in slack_api.of("chat.postMessage") if c.params.get("channel") == channel]


async def test_signatures_and_secrets_are_checked_and_nothing_is_queued(product, platforms):
    import redis

    url = product["url"]
    r = redis.Redis.from_url(product["redis_url"], decode_responses=True)
    async with aiohttp.ClientSession() as http:
        event = slack_event("message_im", channel="D0SIGTEST", user="U0SIG", text="where is my order")
        body = json.dumps(event).encode()
        stale = slack_headers(SLACK_SECRET, body, ts=int(time.time()) - 600)
        cases = [({}, 401), (slack_headers("not-the-secret", body), 403), (stale, 403)]
        for headers, want in cases:
            async with http.post(
                f"{url}/channels/slack/events", data=body, headers={"Content-Type": "application/json", **headers}
            ) as resp:
                assert resp.status == want, (headers, await resp.text())
                assert "error" in await resp.json()
        # A valid request once, then the very same request again: a replay.
        ping = {"type": "url_verification", "challenge": "abc"}
        ping_body = json.dumps(ping).encode()
        ping_headers = {"Content-Type": "application/json", **slack_headers(SLACK_SECRET, ping_body)}
        async with http.post(f"{url}/channels/slack/events", data=ping_body, headers=ping_headers) as resp:
            assert resp.status == 200 and (await resp.json())["challenge"] == "abc"
        async with http.post(f"{url}/channels/slack/events", data=ping_body, headers=ping_headers) as resp:
            assert resp.status == 403 and "replayed" in await resp.text()
        for path in ("interactions", "commands"):
            async with http.post(f"{url}/channels/slack/{path}", data=b"payload=%7B%7D") as resp:
                assert resp.status == 401
        assert not r.exists("sb:conv:{slack:T0SHOP:D0SIGTEST}:meta")

        shopper = TelegramShopper(http, product, platforms, 5012340009)
        for secret, want in [(None, 401), ("wrong-secret", 403)]:
            resp = await shopper.post(shopper.update("where is my order"), secret=secret)
            assert resp.status == want
        assert not r.exists(f"sb:conv:{{{shopper.cid}}}:meta")


async def test_telegram_start_non_text_bots_and_callbacks(product, platforms):
    async with aiohttp.ClientSession() as http:
        zh = TelegramShopper(http, product, platforms, 6120090001, lang="zh-hans")
        start = zh.update(name="start_zh")
        assert (await zh.post(start)).status == 200
        greeting = await zh.next_reply()
        assert "您好" in greeting
        assert (await zh.post(start)).status == 200  # resent: greeted once
        sticker = zh.update(name="sticker")
        assert (await zh.post(sticker)).status == 200
        assert "文字" in await zh.next_reply()
        bot = zh.update(name="from_bot")
        assert (await zh.post(bot)).status == 200
        # A button press: answered at once in the webhook's response, then handled as the button's text.
        press = zh.update(name="callback_query")
        async with http.post(
            f"{product['url']}/channels/telegram/webhook",
            json=press,
            headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["method"] == "answerCallbackQuery"
        await zh.next_reply()
        await asyncio.sleep(1)
        assert len(zh.sent()) == 3, zh.sent()  # greeting, text only, the button's answer; nothing for the bot


async def test_a_429_is_waited_out_and_retried_once_without_duplicates(product, platforms):
    tg_api, slack_api, url = platforms["telegram"], platforms["slack"], product["url"]
    async with aiohttp.ClientSession() as http:
        shopper = TelegramShopper(http, product, platforms, 5012340077)
        tg_api.fail_next["sendMessage"] = 1
        await shopper.say("where is my order")
        await shopper.next_reply()
        calls = [c for c in tg_api.calls if c.method == "sendMessage" and int(c.params["chat_id"]) == shopper.user_id]
        assert [c.status for c in calls] == [429, 200]
        assert calls[1].at - calls[0].at >= tg_api.retry_after

        dm = "D0RATELIMIT"
        slack_api.fail_next["chat.postMessage"] = 1
        await slack_post(http, url, "events", json_body=slack_event("message_im", channel=dm, text="where is my order"))
        await slack_api.wait_for("chat.postMessage", lambda c: c.params.get("channel") == dm)
        await asyncio.sleep(1)
        calls = [c for c in slack_api.calls if c.method == "chat.postMessage" and c.params.get("channel") == dm]
        assert [c.status for c in calls] == [429, 200]
        assert calls[1].at - calls[0].at >= slack_api.retry_after


def test_telegram_webhook_command(product, platforms):
    import subprocess
    import sys

    from conftest import ROOT

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "channels.telegram", *args],
            cwd=ROOT, env=product["env"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done = cli("set-webhook", "--url", "http://127.0.0.1:9/")
    assert done.returncode == 0, done.stderr
    assert "http://127.0.0.1:9/channels/telegram/webhook" in done.stdout
    assert platforms["telegram"].of("setWebhook")[-1].params["secret_token"] == TELEGRAM_SECRET
    info = cli("webhook-info")
    assert info.returncode == 0 and json.loads(info.stdout)["url"].endswith("/channels/telegram/webhook")
    assert TELEGRAM_SECRET not in info.stdout + info.stderr + done.stdout + done.stderr
    refused = cli("set-webhook", "--url", "http://shop.example/")
    assert refused.returncode == 2 and "https" in refused.stderr


async def test_malformed_bodies_get_a_4xx_with_a_reason(product, platforms):
    """Deeply nested JSON and structurally wrong Telegram updates: 400 with a reason, never a 500."""
    url = product["url"]
    nested = ("[" * 20_000 + "]" * 20_000).encode()  # 40 KB: under the body cap, past the recursion limit
    tg = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    user = {"id": 5012340011, "is_bot": False, "first_name": "Ann"}
    broken_updates = [
        {"update_id": 91, "message": "hello"},  # a string where an object belongs
        {"update_id": 92, "callback_query": {"id": "7", "chat_instance": "x", "data": "qr:0"}},  # no from
        {"update_id": 93, "message": {"message_id": 1, "date": 1764000000, "text": "hi", "from": user}},  # no chat
    ]
    async with aiohttp.ClientSession() as http:
        for path, headers in [
            ("/web/sessions", {"Content-Type": "application/json"}),
            ("/web/messages", {"Content-Type": "application/json"}),
            ("/channels/telegram/webhook", tg),
        ]:
            async with http.post(url + path, data=nested, headers=headers) as resp:
                assert resp.status == 400 and "nested too deeply" in await resp.text(), path
        signed = {"Content-Type": "application/json", **slack_headers(SLACK_SECRET, nested)}
        async with http.post(f"{url}/channels/slack/events", data=nested, headers=signed) as resp:
            assert resp.status == 400 and "not valid JSON" in await resp.text()
        for update in broken_updates:
            async with http.post(f"{url}/channels/telegram/webhook", json=update, headers=tg) as resp:
                assert resp.status == 400 and "malformed Telegram update" in await resp.text(), update


async def test_a_workspace_connected_by_add_to_slack_is_answered_with_its_own_token(product, platforms):
    """An admin connects a second workspace by clicking "Add to Slack" (bolt's OAuth flow; the token exchange
    at the local Slack server): a shopper's DM from there is answered with the token that install gave."""
    slack_api, url = platforms["slack"], product["url"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        _, query, cookie = await start_install(http, url, admin_token(product))
        redirect_uri = query["redirect_uri"][0]
        code = slack_api.grant(SLACK_CLIENT_ID, redirect_uri, "T0ADDED", "Added Shop", "U0OWNER", "chat:write")
        status, page = await callback(http, url, query["state"][0], code, cookie)
        assert status == 200 and "Added Shop" in page, page
        token = slack_api.of("oauth.v2.access")[-1].result["access_token"]
        dm = "D0ADDEDSHOP"
        event = slack_event("message_im", channel=dm, user="U0ADDED1", text="where is my order")
        event["team_id"] = event["event"]["team"] = event["authorizations"][0]["team_id"] = "T0ADDED"
        status, _ = await slack_post(http, url, "events", json_body=event)
        assert status == 200
        reply = await slack_api.wait_for("chat.postMessage", lambda c: c.params.get("channel") == dm)
    assert reply.token == token and token != platforms["slack"].token
    assert "order number" in reply.params["text"].lower()
