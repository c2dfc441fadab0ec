"""Slack on slack-bolt: "Add to Slack" (bolt's OAuth flow, the installation sealed in SQL, the state in
Redis) and the desk's agents-only middleware, against a real gateway on the test Redis, its own SQLite
file and the local Slack server (tests/platforms.py). The end-to-end test that a workspace installed this
way is answered with its own token is in tests/test_platforms.py (it needs the workers)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
import redis
from platforms import FakeSlack
from services import SECRET_KEY, SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, lone_gateway
from test_platforms import action, callback, command, slack_event, slack_post, start_install

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slack_gw(tmp_path_factory, redis_server, platforms):
    handle = lone_gateway(tmp_path_factory.mktemp("slack-bolt"), redis_server.url, 6, platforms, "slack admin")
    yield handle
    handle["proc"].stop()


def installations(env: dict) -> list[dict]:
    from sqlalchemy import select

    from shopbot import db
    from shopbot.slack_installs import installations as table

    with db.engine_for(env["SHOPBOT_DATABASE_URL"]).connect() as conn:
        return [dict(r) for r in conn.execute(select(table)).mappings().all()]


async def test_add_to_slack_installs_a_workspace_with_its_token_sealed_in_sql(slack_gw, platforms):
    url, env, admin = slack_gw["url"], slack_gw["env"], slack_gw["admin"]
    slack_api: FakeSlack = platforms["slack"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    exchanged = len(slack_api.of("oauth.v2.access"))  # the local Slack serves every test of the session
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        location, query, cookie = await start_install(http, url)
        assert location.startswith(env["SHOPBOT_SLACK_AUTHORIZE_URL"] + "?"), location
        assert query["client_id"] == [SLACK_CLIENT_ID] and query["state"] == [cookie]
        assert {"chat:write", "commands", "im:history", "app_mentions:read"} <= set(query["scope"][0].split(","))
        redirect_uri = query["redirect_uri"][0]
        assert redirect_uri == f"{url}/channels/slack/oauth_redirect"
        state = query["state"][0]
        assert 0 < r.ttl(f"sb:slack:oauth-state:{state}") <= 600  # expiring, in Redis, shared by every gateway

        # The admin clicks Allow on Slack's page; Slack sends the browser back with a code and the state.
        code = slack_api.grant(SLACK_CLIENT_ID, redirect_uri, "T0NEWSHOP", "New Shop", "U0ADMIN", "chat:write")
        status, page = await callback(http, url, state, code, cookie)
        assert status == 200 and "New Shop" in page, page
        exchange = slack_api.of("oauth.v2.access")[-1]
        assert exchange.result["ok"] and exchange.params["code"] == code
        token = exchange.result["access_token"]

        # The same link again (a replay, or a second tab): the state was used up.
        status, page = await callback(http, url, state, code, cookie)
        assert status == 400 and "expired or was already used" in page, page
        # A state we never issued, with a cookie to match; and no cookie at all.
        status, page = await callback(http, url, "made-up-state", code, "made-up-state")
        assert status == 400 and "expired or was already used" in page, page
        _, query, cookie = await start_install(http, url)
        status, page = await callback(http, url, query["state"][0], code, None)
        assert status == 400 and "did not start the install" in page, page
        # An expired one: its key is gone from Redis after 10 minutes (here, at once).
        _, query, cookie = await start_install(http, url)
        r.delete(f"sb:slack:oauth-state:{query['state'][0]}")
        code2 = slack_api.grant(SLACK_CLIENT_ID, redirect_uri, "T0LATE", "Late", "U0ADMIN", "chat:write")
        status, page = await callback(http, url, query["state"][0], code2, cookie)
        assert status == 400 and "expired" in page, page
        assert len(slack_api.of("oauth.v2.access")) == exchanged + 1  # refused before any code was exchanged

        async with http.get(f"{url}/admin/api/audit?limit=50", headers={"Authorization": f"Bearer {admin}"}) as resp:
            audit = (await resp.json())["entries"]
    assert ("slack:U0ADMIN", "slack.install", "T0NEWSHOP", "ok") in {
        (e["actor"], e["action"], e["target"], e["outcome"]) for e in audit
    }
    assert any(e["action"] == "slack.install" and e["outcome"] == "refused: invalid_state" for e in audit)

    rows = installations(env)
    assert [(x["team_id"], x["team_name"], x["bot_user_id"], x["installer_user_id"]) for x in rows] == [
        ("T0NEWSHOP", "New Shop", "U0BOTNEW", "U0ADMIN")
    ]
    assert token not in json.dumps(rows) and rows[0]["sealed"].startswith("v1:")  # sealed, as credentials are
    from shopbot.crypto import SecretBox, parse_key

    opened = json.loads(SecretBox(parse_key(SECRET_KEY)).open(rows[0]["sealed"], "slack-install/-/T0NEWSHOP"))
    assert opened["bot_token"] == token
    log = slack_gw["log"].read_text()
    assert token not in log and SLACK_CLIENT_SECRET not in log and code not in log


async def test_a_workspace_installed_by_oauth_is_asked_with_its_own_token(slack_gw, platforms):
    """The desk's workspace connected by "Add to Slack": the gateway's own call to Slack (who is in the
    agents' channel) goes out with the token that workspace's installation gave, not the app's pasted one."""
    url, env = slack_gw["url"], slack_gw["env"]
    slack_api: FakeSlack = platforms["slack"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    secret = "desk-two-signing-secret"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        _, query, cookie = await start_install(http, url)
        code = slack_api.grant(
            SLACK_CLIENT_ID, query["redirect_uri"][0], "T0DESK2", "Desk Two", "U0ADMIN2", "chat:write"
        )  # fmt: skip
        assert (await callback(http, url, query["state"][0], code, cookie))[0] == 200
        token = slack_api.of("oauth.v2.access")[-1].result["access_token"]
        slack_api.tokens["xoxb-pasted-app-token"] = "T0PASTED"
        slack_api.members["C0DESK2"] = ["U0AGENT9"]
        values = {"signing_secret": secret, "bot_token": "xoxb-pasted-app-token", "agent_channel": "C0DESK2",
                  "team_id": ""}  # fmt: skip
        status, entry = await _put_slack(http, slack_gw, "desk2", values)
        assert status == 201, entry
        try:
            for k in r.scan_iter("sb:slack:members:*"):
                r.delete(k)
            cmd = {**command("queue", user="U0AGENT9"), "team_id": "T0DESK2", "channel_id": "C0DESK2"}
            status, text = await slack_post(http, url, "commands", form=cmd, secret=secret)
            assert status == 200 and "waiting" in text.lower() and "Only the shop's agents" not in text, text
        finally:
            await _delete_slack(http, slack_gw, "desk2")
    asked = [c for c in slack_api.of("conversations.members") if c.params.get("channel") == "C0DESK2"]
    assert [c.token for c in asked] == [token]
    # The workspace removes the app: Slack says so (app_uninstalled), and its token is forgotten.
    assert "T0DESK2" in {x["team_id"] for x in installations(env)}
    gone = {
        "type": "event_callback",
        "team_id": "T0DESK2",
        "api_app_id": "A0SHOPBOT",
        "event_id": "Ev0GONE0001",
        "event": {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"},
        "event_time": int(time.time()),
    }
    async with aiohttp.ClientSession() as http:
        assert (await slack_post(http, url, "events", json_body=gone))[0] == 200
    assert "T0DESK2" not in {x["team_id"] for x in installations(env)}


async def _put_slack(http, gw, name: str, values: dict) -> tuple[int, dict]:
    async with http.put(
        f"{gw['url']}/admin/api/channels/slack/{name}", json=values, headers={"Authorization": f"Bearer {gw['admin']}"}
    ) as resp:
        return resp.status, await resp.json()


async def _delete_slack(http, gw, name: str) -> None:
    async with http.delete(
        f"{gw['url']}/admin/api/channels/slack/{name}", headers={"Authorization": f"Bearer {gw['admin']}"}
    ) as resp:
        assert resp.status == 200


async def test_the_agents_only_middleware_refuses_a_non_agent_and_audits_it(slack_gw, platforms):
    """bolt's listener middleware on every desk listener: someone who can post in the agents' channel but is
    not in it (conversations.members) is refused politely, audited with their Slack user id, and the
    conversation stays queued; an agent's same command goes through."""
    url, env, admin = slack_gw["url"], slack_gw["env"], slack_gw["admin"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    cid, card_ts = "slack:T0SHOP:D0MIDDLE1", "1700000003.000100"
    state = {"status": "queued", "priority": 3, "handoff_reason": "requested", "queued_at": time.time() - 30}
    r.set(f"sb:conv:{{{cid}}}:state", json.dumps(state))
    r.hset(f"sb:conv:{{{cid}}}:meta", mapping={"channel": "slack", "sender": "U0SHOPPER7"})
    r.zadd("sb:handoff:queue", {cid: 1.0})
    r.set(f"sb:desk:thread:{card_ts}", cid)

    def status_of() -> str:
        return json.loads(r.get(f"sb:conv:{{{cid}}}:state") or "{}").get("status")

    async with aiohttp.ClientSession() as http:
        status, text = await slack_post(http, url, "commands", form=command(f"claim {cid}", user="U0NOTAGENT"))
        assert status == 200 and "Only the shop's agents" in text and cid not in text, text
        status, _ = await slack_post(
            http, url, "interactions", form=action("block_actions_claim", cid, card_ts, "U0NOTAGENT")
        )  # fmt: skip
        assert status == 200
        reply = slack_event("agent_thread_reply", thread_ts=card_ts, ts=f"{time.time():.6f}", user="U0NOTAGENT")
        assert (await slack_post(http, url, "events", json_body=reply))[0] == 200
        assert status_of() == "queued"
        assert not [m for m in r.xrange(f"sb:conv:{{{cid}}}:log") if "U0NOTAGENT" in json.dumps(m)]
        # Something the app does not listen for is acknowledged (not bolt's 404, which Slack would resend).
        other = slack_event("message_im", channel="D0IGNORED", user="U0X")
        other["event"] = {"type": "reaction_added", "user": "U0X", "reaction": "thumbsup", "event_ts": "1.2"}
        assert (await slack_post(http, url, "events", json_body=other))[0] == 200
        status, text = await slack_post(http, url, "commands", form=command(f"claim {cid}"))
        assert status == 200 and "Done" in text, text
        assert status_of() == "agent"
        await asyncio.sleep(0)
        async with http.get(f"{url}/admin/api/audit?limit=100", headers={"Authorization": f"Bearer {admin}"}) as resp:
            audit = (await resp.json())["entries"]
    r.zrem("sb:handoff:queue", cid)
    mine = {(e["actor"], e["action"], e["outcome"]) for e in audit if e["target"] == cid}
    assert {
        ("slack:U0NOTAGENT", "desk.claim", "refused: not a desk agent"),
        ("slack:U0NOTAGENT", "desk.reply", "refused: not a desk agent"),
        ("slack:U0AGENT1", "desk.claim", "ok"),
    } <= mine, mine
    assert len([x for x in mine if x[0] == "slack:U0NOTAGENT"]) == 2  # the button's and the reply's
    assert [e for e in audit if e["actor"] == "slack:U0NOTAGENT" and e["action"] == "desk.claim"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_installations_are_kept_sealed_on_sqlite_and_postgresql(backend, tmp_path):
    """The installation table under both databases: saved (one row per workspace, a re-install replaces
    it), read back opened, re-sealed by a key rotation, deleted."""
    import uuid

    from shopbot import db
    from shopbot.crypto import SecretBox, generate_key, parse_key
    from shopbot.slack_installs import InstallationTable

    if backend == "postgresql":
        psycopg = pytest.importorskip("psycopg")
        name = f"shopbot_test_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite:///{tmp_path / 'installs.db'}"
    engine = db.engine_for(url)
    try:
        old_key = parse_key(SECRET_KEY)
        table = InstallationTable(engine, SecretBox(old_key))
        base = {
            "client_id": SLACK_CLIENT_ID,
            "team_id": "T0PG",
            "team_name": "PG Shop",
            "bot_user_id": "U0B",
            "bot_scopes": ["chat:write", "commands"],
            "user_id": "U0ADMIN",
            "is_enterprise_install": False,
        }
        table.save({**base, "bot_token": "xoxb-first-token-0001"})
        table.save({**base, "bot_token": "xoxb-second-token-0002"})  # installed again: replaced
        [inst] = table.all()
        assert (inst.team_id, inst.bot_token, inst.bot_scopes) == (
            "T0PG",
            "xoxb-second-token-0002",
            "chat:write,commands",
        )
        new_key = parse_key(generate_key())
        rotated = InstallationTable(engine, SecretBox(new_key, [old_key]))
        assert rotated.reseal() == 1 and rotated.reseal() == 0
        assert InstallationTable(engine, SecretBox(new_key)).all()[0].bot_token == "xoxb-second-token-0002"
        assert rotated.delete(None, "T0PG") == 1 and rotated.all() == []
    finally:
        engine.dispose()
        if backend == "postgresql":
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
