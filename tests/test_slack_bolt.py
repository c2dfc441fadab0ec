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
from platforms import FakeSlack, slack_headers
from services import SECRET_KEY, SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_SECRET, lone_gateway
from test_platforms import action, callback, command, install_link, slack_event, slack_post, start_install

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slack_gw(tmp_path_factory, redis_server, platforms):
    handle = lone_gateway(tmp_path_factory.mktemp("slack-bolt"), redis_server.url, 6, platforms, "slack admin")
    yield handle
    handle["proc"].stop()


def installations(env: dict) -> list[dict]:
    from sqlalchemy import select

    from admin.slack_installs import installations as table
    from shopbot import db

    with db.engine_for(env["SHOPBOT_DATABASE_URL"]).connect() as conn:
        return [dict(r) for r in conn.execute(select(table)).mappings().all()]


async def test_add_to_slack_installs_a_workspace_with_its_token_sealed_in_sql(slack_gw, platforms):
    url, env, admin = slack_gw["url"], slack_gw["env"], slack_gw["admin"]
    slack_api: FakeSlack = platforms["slack"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    exchanged = len(slack_api.of("oauth.v2.access"))  # the local Slack serves every test of the session
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        location, query, cookie = await start_install(http, url, admin)
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
        _, query, cookie = await start_install(http, url, admin)
        status, page = await callback(http, url, query["state"][0], code, None)
        assert status == 400 and "did not start the install" in page, page
        # An expired one: its key is gone from Redis after 10 minutes (here, at once).
        _, query, cookie = await start_install(http, url, admin)
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
    from admin.crypto import SecretBox, parse_key

    opened = json.loads(SecretBox(parse_key(SECRET_KEY)).open(rows[0]["sealed"], "slack-install/-/T0NEWSHOP"))
    assert opened["bot_token"] == token
    log = slack_gw["log"].read_text()
    assert token not in log and SLACK_CLIENT_SECRET not in log and code not in log


async def test_a_workspace_installed_by_oauth_is_asked_with_its_own_token(slack_gw, platforms):
    """The desk's workspace connected by "Add to Slack": the gateway's own call to Slack (who is in the
    agents' channel) goes out with the token that workspace's installation gave, not the app's pasted one."""
    url, env, admin = slack_gw["url"], slack_gw["env"], slack_gw["admin"]
    slack_api: FakeSlack = platforms["slack"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    # The stored entry carries the "Add to Slack" app's signing secret: it is that app (installations are
    # used only for requests that app signed).
    secret = SLACK_SECRET
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        _, query, cookie = await start_install(http, url, admin)
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

    from admin.crypto import SecretBox, generate_key, parse_key
    from admin.slack_installs import InstallationTable
    from shopbot import db

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


async def _install(http, gw: dict, slack_api: FakeSlack, team: str) -> tuple[int, str, str]:
    """An admin connects ``team`` by "Add to Slack": (the callback's status, its page, the token Slack gave)."""
    _, query, cookie = await start_install(http, gw["url"], gw["admin"])
    code = slack_api.grant(SLACK_CLIENT_ID, query["redirect_uri"][0], team, f"Shop {team}", "U0ADMIN", "chat:write")
    status, page = await callback(http, gw["url"], query["state"][0], code, cookie)
    exchanges = [c for c in slack_api.of("oauth.v2.access") if c.params.get("code") == code]
    return status, page, (exchanges[-1].result.get("access_token", "") if exchanges else "")


async def _audit(http, gw: dict) -> list[dict]:
    headers = {"Authorization": f"Bearer {gw['admin']}"}
    async with http.get(f"{gw['url']}/admin/api/audit?limit=200", headers=headers) as resp:
        return (await resp.json())["entries"]


def _channels(env: dict, monkeypatch):
    """The credentials in force, as a worker loads them from the gateway's database."""
    from admin.credentials import CredentialStore
    from shopbot import db
    from shopbot.settings import Settings

    for k, v in env.items():
        if k.startswith("SHOPBOT_"):
            monkeypatch.setenv(k, v)
    settings = Settings()
    return CredentialStore.from_settings(settings, db.engine_for(env["SHOPBOT_DATABASE_URL"])).snapshot()


async def test_an_installation_token_never_goes_to_a_stored_entrys_url(slack_gw, platforms, monkeypatch):
    """S1: a stored Slack entry with its own signing secret and its own api_base_url is not the "Add to Slack"
    app: requests it signs, and conversations it carries, never get a workspace's OAuth token, neither for
    the gateway's own call (conversations.members) nor for the worker's sender."""
    from workers.outbound import sender_for

    slack_api: FakeSlack = platforms["slack"]
    evil_secret, evil_url = "evil-signing-secret", "http://127.0.0.1:9/api/"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        status, page, token = await _install(http, slack_gw, slack_api, "T0EVIL1")
        assert status == 200 and token, page
        values = {"signing_secret": evil_secret, "bot_token": "xoxb-evil-fake-0001", "agent_channel": "C0EVIL"}
        status, entry = await _put_slack(http, slack_gw, "evil", {**values, "team_id": "", "api_base_url": evil_url})
        assert status == 201, entry
        try:
            chans = _channels(slack_gw["env"], monkeypatch)
            sender = sender_for("slack", {"account": "T0EVIL1", "via": "evil"}, chans)
            assert sender is not None and sender.client.token != token  # the entry's own token
            assert sender.client.base_url == evil_url and sender.client.token == "xoxb-evil-fake-0001"
            assert chans.slack_auth("T0EVIL1", chans.slack_app("evil")).installation is None
            # The gateway's own call: the entry now points at the local Slack (it may be anyone's server).
            status, entry = await _put_slack(
                http, slack_gw, "evil", {"api_base_url": platforms["slack_url"], "bot_token": "xoxb-evil-fake-0001"}
            )  # fmt: skip
            assert status == 200, entry
            slack_api.members["C0EVIL"] = ["U0EVIL"]
            cmd = {**command("queue", user="U0EVIL"), "team_id": "T0EVIL1", "channel_id": "C0EVIL"}
            status, text = await slack_post(http, slack_gw["url"], "commands", form=cmd, secret=evil_secret)
            assert status == 200 and "waiting" not in text.lower(), text  # refused: membership not checked
        finally:
            await _delete_slack(http, slack_gw, "evil")
    assert token not in {c.token for c in slack_api.of("conversations.members", ok_only=False)}


async def test_installations_answer_only_the_add_to_slack_app_and_go_to_its_url(slack_gw, platforms, monkeypatch):
    """S1, the other side: the "Add to Slack" app (the environment's, or a stored entry with its signing
    secret) gets the installation's token, with SHOPBOT_SLACK_API_BASE_URL, whatever its own api_base_url."""
    from workers.outbound import sender_for

    slack_api: FakeSlack = platforms["slack"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        status, page, token = await _install(http, slack_gw, slack_api, "T0ADDED")
        assert status == 200, page
        chans = _channels(slack_gw["env"], monkeypatch)
        sender = sender_for("slack", {"account": "T0ADDED", "via": "environment"}, chans)
        assert (sender.client.token, sender.client.base_url) == (token, platforms["slack_url"])
        values = {
            "signing_secret": SLACK_SECRET,
            "bot_token": "xoxb-same-app-0001",
            "api_base_url": "http://127.0.0.1:9/api/",
        }
        status, entry = await _put_slack(http, slack_gw, "same", {**values, "team_id": ""})
        assert status == 201, entry
        try:
            chans = _channels(slack_gw["env"], monkeypatch)
            sender = sender_for("slack", {"account": "T0ADDED", "via": "same"}, chans)
            assert (sender.client.token, sender.client.base_url) == (token, platforms["slack_url"])
            other = sender_for("slack", {"account": "T0NOTINSTALLED", "via": "same"}, chans)
            assert (other.client.token, other.client.base_url) == ("xoxb-same-app-0001", "http://127.0.0.1:9/api/")
        finally:
            await _delete_slack(http, slack_gw, "same")


async def test_bolt_never_builds_its_own_oauth_flow_from_its_environment(tmp_path_factory, redis_server, platforms):
    """S2: without SHOPBOT_SLACK_CLIENT_ID, bolt's own SLACK_CLIENT_ID / SLACK_CLIENT_SECRET (and its file
    installation store, tokens unsealed under ~) are not used: no install, no redirect, nothing written."""
    tmp = tmp_path_factory.mktemp("slack-no-oauth")
    home = tmp / "home"
    home.mkdir()
    gw = lone_gateway(
        tmp, redis_server.url, 7, platforms, "slack admin", SHOPBOT_SLACK_CLIENT_ID="", SHOPBOT_SLACK_CLIENT_SECRET="",
        SLACK_CLIENT_ID=SLACK_CLIENT_ID, SLACK_CLIENT_SECRET=SLACK_CLIENT_SECRET, HOME=str(home),
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("oauth_redirect?state=abc&code=def", "install"):
                async with http.get(f"{gw['url']}/channels/slack/{path}", allow_redirects=False) as r:
                    assert r.status == 404 and "not set up" in await r.text(), path
            headers = {"Authorization": f"Bearer {gw['admin']}"}
            async with http.post(f"{gw['url']}/admin/api/slack/install-link", headers=headers) as r:
                assert r.status == 404 and "not set up" in await r.text()
    finally:
        gw["proc"].stop()
    assert not (home / ".bolt-app-installation").exists()


async def test_only_an_admin_starts_an_install_and_only_for_the_shops_workspaces(slack_gw, platforms):
    """S3: /install needs the one-time link the admin API issues (audited with the admin); a link works
    once; an install for a workspace outside SHOPBOT_SLACK_TEAM_ID / SHOPBOT_SLACK_INSTALL_TEAMS is refused
    and nothing is stored."""
    url, slack_api = slack_gw["url"], platforms["slack"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        for link in (f"{url}/channels/slack/install", f"{url}/channels/slack/install?ticket=made-up"):
            async with http.get(link, allow_redirects=False) as r:
                assert r.status == 403 and "admin page" in await r.text()
        link = await install_link(http, url, slack_gw["admin"])
        async with http.get(link, allow_redirects=False) as r:
            assert r.status == 302
        async with http.get(link, allow_redirects=False) as r:
            assert r.status == 403  # used
        async with http.post(f"{url}/admin/api/slack/install-link") as r:
            assert r.status == 401
        status, page, _ = await _install(http, slack_gw, slack_api, "T0STRANGER")
        assert status == 403 and "not one the shop connects" in page, page
        audit = await _audit(http, slack_gw)
    assert "T0STRANGER" not in {x["team_id"] for x in installations(slack_gw["env"])}
    assert any(e["action"] == "slack.install_link" and e["outcome"] == "ok" for e in audit)
    assert any(e["action"] == "slack.install" and e["outcome"] == "refused: team_not_allowed" for e in audit)
    assert any(e["action"] == "slack.install" and e["outcome"] == "refused: no install ticket" for e in audit)


def _save_row(env: dict, **values) -> None:
    """An installation row as another app (or an org-wide install) left it in the same database."""
    from admin.crypto import SecretBox, parse_key
    from admin.slack_installs import InstallationTable
    from shopbot import db

    base = {"client_id": SLACK_CLIENT_ID, "bot_user_id": "U0BOTX", "is_enterprise_install": False}
    InstallationTable(db.engine_for(env["SHOPBOT_DATABASE_URL"]), SecretBox(parse_key(SECRET_KEY))).save(
        {**base, **values}
    )


async def test_uninstall_and_revocation_forget_only_this_apps_rows(slack_gw, platforms):
    """C1: app_uninstalled deletes this app's row of the workspace (another client id's stays), an org-wide
    install's row by its enterprise id; tokens_revoked deletes the installation of the revoked bot user."""
    url, env, slack_api = slack_gw["url"], slack_gw["env"], platforms["slack"]

    def event(kind: str, team: str, **extra) -> dict:
        body = {
            "type": "event_callback", "team_id": team, "api_app_id": "A0SHOPBOT",
            "event_id": f"Ev0C1{kind[:4]}{time.time_ns()}", "event_time": int(time.time()),
            "event": {"type": kind, "event_ts": f"{time.time():.6f}", **extra.pop("event", {})}, **extra,
        }  # fmt: skip
        return body

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        assert (await _install(http, slack_gw, slack_api, "T0GONE"))[0] == 200
        _save_row(env, client_id="999.other-app", team_id="T0GONE", app_id="A0OTHER", bot_token="xoxb-other-app-1")
        _save_row(env, enterprise_id="E0ORG", team_id="", is_enterprise_install=True, bot_token="xoxb-org-1")
        assert (await _install(http, slack_gw, slack_api, "T0REVOKED"))[0] == 200
        rows = {(x["client_id"], x["enterprise_id"], x["team_id"]) for x in installations(env)}
        assert {
            (SLACK_CLIENT_ID, "", "T0GONE"),
            ("999.other-app", "", "T0GONE"),
            (SLACK_CLIENT_ID, "E0ORG", ""),
        } <= rows

        assert (await slack_post(http, url, "events", json_body=event("app_uninstalled", "T0GONE")))[0] == 200
        org = event(
            "app_uninstalled", "T0INORG", enterprise_id="E0ORG",
            authorizations=[{"enterprise_id": "E0ORG", "team_id": None, "is_enterprise_install": True}],
        )  # fmt: skip
        assert (await slack_post(http, url, "events", json_body=org))[0] == 200
        revoked = event("tokens_revoked", "T0REVOKED", event={"tokens": {"oauth": [], "bot": ["U0BOTNEW"]}})
        assert (await slack_post(http, url, "events", json_body=revoked))[0] == 200
        audit = await _audit(http, slack_gw)
    rows = {(x["client_id"], x["enterprise_id"], x["team_id"]) for x in installations(env)}
    assert (SLACK_CLIENT_ID, "", "T0GONE") not in rows and ("999.other-app", "", "T0GONE") in rows
    assert (SLACK_CLIENT_ID, "E0ORG", "") not in rows
    assert (SLACK_CLIENT_ID, "", "T0REVOKED") not in rows
    assert {("slack.uninstall", "T0GONE"), ("slack.tokens_revoked", "T0REVOKED")} <= {
        (e["action"], e["target"]) for e in audit if e["outcome"].startswith("ok")
    }


async def test_a_failed_token_exchange_is_audited_and_answered_with_the_page(slack_gw, platforms):
    """C3: the token exchange fails past bolt's own error handling (Slack disconnects during auth.test): a 502
    with the "not completed" page, and an audit row; nothing stored."""
    slack_api: FakeSlack = platforms["slack"]
    slack_api.disconnect.add("auth.test")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            status, page, _ = await _install(http, slack_gw, slack_api, "T0FAILS")
            audit = await _audit(http, slack_gw)
    finally:
        slack_api.disconnect.discard("auth.test")
    assert status == 502 and "not completed" in page and "token exchange" in page, page
    assert any(e["action"] == "slack.install" and e["outcome"].startswith("failed: ") for e in audit)
    assert "T0FAILS" not in {x["team_id"] for x in installations(slack_gw["env"])}


async def test_an_agents_reply_that_failed_is_handled_when_slack_retries_it(slack_gw, platforms):
    """G1: a card-thread reply whose handling failed (a 5xx, here Redis refusing the write) is not marked
    seen: Slack's retry of the same event is handled, and the reply reaches the conversation once."""
    url, env = slack_gw["url"], slack_gw["env"]
    r = redis.Redis.from_url(env["SHOPBOT_REDIS_URL"], decode_responses=True)
    cid, card_ts = "slack:T0SHOP:D0RETRY1", "1700000004.000100"
    state = {"status": "queued", "priority": 3, "handoff_reason": "requested", "queued_at": time.time() - 30}
    r.set(f"sb:conv:{{{cid}}}:state", json.dumps(state))
    r.hset(f"sb:conv:{{{cid}}}:meta", mapping={"channel": "slack", "sender": "U0SHOPPER8"})
    r.zadd("sb:handoff:queue", {cid: 1.0})
    r.set(f"sb:desk:thread:{card_ts}", cid)
    async with aiohttp.ClientSession() as http:
        status, text = await slack_post(http, url, "commands", form=command(f"claim {cid}"))
        assert status == 200 and "Done" in text, text
        log_key = f"sb:conv:{{{cid}}}:log"
        saved = r.xrange(log_key)
        r.delete(log_key)
        r.set(log_key, "not a stream")  # the write fails (WRONGTYPE): a backend error
        reply = slack_event("agent_thread_reply", thread_ts=card_ts, ts=f"{time.time():.6f}", text="On its way!")
        status, _ = await slack_post(http, url, "events", json_body=reply)
        assert status >= 500
        r.delete(log_key)
        for _, fields in saved:
            r.xadd(log_key, fields)
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
        status, text = await slack_post(http, url, "events", json_body=reply, headers=retry)
        assert status == 200 and "duplicate" not in text, text
        status, text = await slack_post(http, url, "events", json_body=reply, headers=retry)
        assert status == 200 and "duplicate" in text, text  # handled once
    r.zrem("sb:handoff:queue", cid)
    said = [f for _, f in r.xrange(log_key) if "On its way!" in json.dumps(f)]
    assert len(said) == 1, said


async def test_signed_but_oddly_shaped_bodies_get_a_400_with_a_reason(slack_gw):
    """C4: read the way bolt reads them, bodies it cannot take are a 400 with the reason, never a 500."""
    url = slack_gw["url"]
    event = slack_event("message_im", channel="D0ODD", user="U0ODD")
    interaction = json.dumps(action("block_actions_claim", "slack:T0SHOP:D0ODD", "1.2")["payload"])
    form = "application/x-www-form-urlencoded"
    cases = [
        ("commands", json.dumps(command("queue")).encode(), form, "slash command"),
        ("commands", b"command=%2Fhandoff&text=queue&command=%2Fother", form, "repeated"),
        ("interactions", f"payload={interaction}&payload=%7B%7D".encode(), form, "repeated"),
        ("interactions", b'payload={"type":"block_actions","actions":"x"}', form, "actions"),
        ("events", json.dumps({**event, "event": "x"}).encode(), "application/json", "event"),
        ("events", json.dumps({**event, "authorizations": "x"}).encode(), "application/json", "authorizations"),
        ("events", json.dumps({**event, "authorizations": [1]}).encode(), "application/json", "authorizations"),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for path, body, ctype, why in cases:
            headers = {"Content-Type": ctype, **slack_headers(SLACK_SECRET, body)}
            async with http.post(f"{url}/channels/slack/{path}", data=body, headers=headers) as resp:
                text = await resp.text()
                assert resp.status == 400 and why in text, (path, body[:80], resp.status, text)
