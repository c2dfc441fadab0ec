"""Agents' corrections of the bot's reading (issue 20, points 4 and 5): the agents' API and the Slack desk's
"Correct reading" against a real gateway and a dialogue worker (it makes the desk's Slack calls: the modal's
``views.open``) on the test Redis, their own SQLite file and the local Slack server (tests/platforms.py);
the training export read back with nlu's own CSV reader; a shopper's corrections exported and forgotten
with the rest of their data."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest
import yaml
from platforms import FakeSlack
from services import ROOT, lone_gateway, worker
from test_channels import fixture
from test_platforms import action, slack_post

from shopbot import db, transcripts
from shopbot.store import ConversationStore, key

pytestmark = pytest.mark.slow
REDIS_DB = 14


@pytest.fixture(scope="module")
def desk_gw(tmp_path_factory, redis_server, platforms):
    tmp = tmp_path_factory.mktemp("corrections")
    handle = lone_gateway(tmp, redis_server.url, REDIS_DB, platforms, "corrections admin")
    # The desk's Slack calls (the modal) are a worker's: one dialogue worker, no models needed for them.
    handle["worker"] = worker(handle["env"], tmp / "worker.log", "dialogue", name="corrections")
    yield handle
    handle["worker"].stop()
    handle["proc"].stop()


async def call(http, method: str, url: str, token: str, body=None) -> tuple[int, dict]:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json(content_type=None)


async def token(http, gw: dict, name: str, role: str) -> str:
    status, made = await call(http, "POST", f"{gw['url']}/admin/api/tokens", gw["admin"], {"name": name, "role": role})
    assert status == 201, made
    return made["token"]


def conversation(gw: dict, said: list[tuple[str, str | None, str | None, str]], status: str = "queued") -> tuple:
    """A web conversation in Redis (log, meta, state, annotations) and its shopper rows in the SQL transcript:
    ``said`` is (text, intent, sentiment, action) per shopper message, each followed by a bot reply.
    Returns (cid, shopper message ids, bot reply ids)."""
    store = ConversationStore.from_url(gw["env"]["SHOPBOT_REDIS_URL"])
    cid = f"web:default:{uuid.uuid4().hex}"
    store.r.hset(key(cid, "meta"), mapping={"channel": "web", "sender": f"pub-{cid[-6:]}"})
    reason = "not_understood" if said and said[-1][3] == "handoff:not_understood" else "requested"
    state = {"status": status, "priority": 2, "handoff_reason": reason, "queued_at": time.time() - 30}
    store.r.set(key(cid, "state"), json.dumps(state))
    mids, replies, rows = [], [], []
    for text, intent, sentiment, done in said:
        ts = time.time()
        mid = store.r.xadd(key(cid, "log"), {"from": "shopper", "text": text, "ts": f"{ts:.3f}"})
        replies.append(store.r.xadd(key(cid, "log"), {"from": "bot", "text": "Sorry?", "ts": f"{ts:.3f}"}))
        ann = {"language": "en", "intent": intent, "intent_confidence": 0.31, "sentiment": sentiment,
               "sentiment_score": -0.2}  # fmt: skip
        store.save_annotations([(cid, mid, ann)])
        meta = {"channel": "web", "sender": f"pub-{cid[-6:]}"}
        rows.append(transcripts.transcript_row(cid, meta, mid, "shopper", text, ts, action=done, **ann))
        mids.append(mid)
        time.sleep(0.002)  # distinct times: the labelling list is newest first
    if rows:
        with db.engine_for(gw["env"]["SHOPBOT_DATABASE_URL"]).begin() as conn:
            conn.execute(transcripts.messages.insert(), rows)
    return cid, mids, replies


NOT_UNDERSTOOD = [
    ("my thingy never did the thing", "track_order", "neutral", "answer:track_order"),  # understood
    ("the blue one is wrong colour again", "complaint", "neutral", "not_understood"),
    ("can you swap it for the red", "change_order", "neutral", "not_understood"),
    ("this is useless, a person please", "out_of_scope", "negative", "handoff:not_understood"),
]


async def test_agents_correct_messages_through_the_api_as_their_token_and_it_is_audited(desk_gw):
    url = desk_gw["url"]
    cid, mids, replies = conversation(desk_gw, NOT_UNDERSTOOD)
    asked, _, _ = conversation(desk_gw, [("a person please", "contact_human_agent", "neutral", "handoff:requested")])
    api = f"{url}/handoff/api/conversations/{cid}/messages"
    async with aiohttp.ClientSession() as http:
        alice, viewer = await token(http, desk_gw, "alice", "agent"), await token(http, desk_gw, "val", "viewer")

        # Offered for labelling: the message that handed off and the not-understood run before it, newest
        # first, with the model's reading; not the understood one, nor another reason's hand-off.
        status, listed = await call(http, "GET", f"{url}/handoff/api/labelling?limit=200", alice)
        assert status == 200, listed
        mine = [m for m in listed["messages"] if m["conversation_id"] == cid]
        assert [m["message_id"] for m in mine] == [mids[3], mids[2], mids[1]]
        assert (mine[0]["text"], mine[0]["intent"], mine[0]["intent_confidence"], mine[0]["sentiment"]) == (
            "this is useless, a person please", "out_of_scope", 0.31, "negative",
        )  # fmt: skip
        assert mine[0]["action"] == "handoff:not_understood" and mine[1]["action"] == "not_understood"
        assert not [m for m in listed["messages"] if m["conversation_id"] == asked]

        # The agent is the token's own name; a body naming someone else is refused.
        status, out = await call(http, "POST", f"{api}/{mids[2]}/correction", alice, {"intent": "change_order",
                                                                                      "agent": "mallory"})  # fmt: skip
        assert status == 403 and "token's own name" in out["error"], out
        status, stored = await call(
            http, "POST", f"{api}/{mids[2]}/correction", alice, {"intent": "change_order", "sentiment": "negative"}
        )  # fmt: skip
        assert status == 201, stored
        assert (stored["agent"], stored["intent"], stored["sentiment"]) == ("alice", "change_order", "negative")
        assert (stored["model_intent"], stored["model_sentiment"], stored["text"]) == (
            "change_order", "neutral", "can you swap it for the red",
        )  # fmt: skip
        # A later correction replaces the labels it gives and keeps the others.
        status, stored = await call(http, "POST", f"{api}/{mids[2]}/correction", alice, {"sentiment": "neutral"})
        assert status == 201 and (stored["intent"], stored["sentiment"]) == ("change_order", "neutral")
        # A message not in SQL yet (the transcript lags by seconds) is corrected from the log and annotation.
        fresh_cid, fresh, _ = conversation(desk_gw, [])
        store = ConversationStore.from_url(desk_gw["env"]["SHOPBOT_REDIS_URL"])
        fresh_mid = store.r.xadd(key(fresh_cid, "log"), {"from": "shopper", "text": "¿dónde está?", "ts": "1.0"})
        ann = {"language": "other", "intent": "review", "sentiment": "neutral"}
        store.save_annotations([(fresh_cid, fresh_mid, ann)])
        status, stored = await call(
            http, "POST", f"{url}/handoff/api/conversations/{fresh_cid}/messages/{fresh_mid}/correction", alice,
            {"intent": "track_order"},
        )  # fmt: skip
        assert status == 201 and (stored["model_intent"], stored["text"]) == ("review", "¿dónde está?"), stored

        # Bad labels: 400 with the reason.
        for body, reason in (
            ({"intent": "fly_me_to_the_moon"}, "unknown intent 'fly_me_to_the_moon'"),
            ({"sentiment": "furious"}, "unknown sentiment 'furious'; one of: negative, neutral, positive"),
            ({"intent": 7}, "unknown intent"),
            ({}, "give an intent, a sentiment, or both"),
        ):
            status, out = await call(http, "POST", f"{api}/{mids[1]}/correction", alice, body)
            assert status == 400 and reason in out["error"], (body, out)
        status, out = await call(http, "POST", f"{api}/{mids[1]}/correction", alice, ["intent"])
        assert status == 400 and "JSON object" in out["error"], out
        # Unknown messages, and what is not a shopper's message: 404.
        for mid in ("99999999-0", replies[1], "not-an-id", "18446744073709551616-0"):
            status, out = await call(http, "POST", f"{api}/{mid}/correction", alice, {"intent": "complaint"})
            assert status == 404 and "no shopper message" in out["error"], (mid, out)
        status, _ = await call(
            http, "POST", f"{url}/handoff/api/conversations/web:default:nobody/messages/{mids[1]}/correction", alice,
            {"intent": "complaint"},
        )  # fmt: skip
        assert status == 404
        # A viewer may not correct, nor list.
        status, out = await call(http, "POST", f"{api}/{mids[1]}/correction", viewer, {"intent": "complaint"})
        assert status == 403 and "agent role" in out["error"], out
        assert (await call(http, "GET", f"{url}/handoff/api/labelling", viewer))[0] == 403
        assert (await call(http, "GET", f"{url}/handoff/api/labelling?limit=0", alice))[0] == 400

        # Corrected: no longer offered.
        status, listed = await call(http, "GET", f"{url}/handoff/api/labelling", alice)
        assert [m["message_id"] for m in listed["messages"] if m["conversation_id"] == cid] == [mids[3], mids[1]]

        status, audit = await call(http, "GET", f"{url}/admin/api/audit?limit=100", desk_gw["admin"])
    entries = [e for e in audit["entries"] if e["action"] == "handoff.correct" and e["target"] == cid]
    ok = [e for e in entries if e["outcome"] == "ok"]
    assert [(e["actor"].split(" (")[0], e["detail"]) for e in ok] == [
        ("alice", {"message_id": mids[2], "sentiment": "neutral"}),
        ("alice", {"message_id": mids[2], "intent": "change_order", "sentiment": "negative"}),
    ]  # newest first: every correction is on the record, with its labels
    outcomes = {e["outcome"] for e in entries}
    assert {"refused 400", "refused 403", "refused 404"} <= outcomes, outcomes
    assert any(e["action"] == "handoff.labelling" and e["actor"].startswith("alice") for e in audit["entries"])


def submission(opened: dict, picks: dict[str, tuple[str | None, str | None]], user: str = "U0AGENT1") -> dict:
    """What Slack posts when the agent presses Save on the modal it opened: the opened view with the state of
    its selects (``picks``: message id -> intent, sentiment; None left empty), shaped as the recorded one."""
    payload = copy.deepcopy(fixture("slack", "view_submission_correct")["form"]["payload"])
    template = payload["view"]["state"]["values"]
    picked, empty = template["fix:<mid>:intent"]["label"], template["fix:<mid>:sentiment"]["label"]
    values = {}
    for mid, labels in picks.items():
        for field, value in zip(("intent", "sentiment"), labels, strict=True):
            chosen = copy.deepcopy(picked if value else empty)
            if value:
                chosen["selected_option"] = {"text": {"type": "plain_text", "text": value}, "value": value}
            values[f"fix:{mid}:{field}"] = {"label": chosen}
    payload["user"]["id"] = user
    payload["view"] = {**opened, "state": {"values": values}}
    return {"payload": payload}


def correction_of(gw: dict, cid: str, mid: str) -> dict | None:
    from sqlalchemy import select

    from shopbot.corrections import corrections

    with db.engine_for(gw["env"]["SHOPBOT_DATABASE_URL"]).connect() as conn:
        row = conn.execute(
            select(corrections).where(corrections.c.conversation_id == cid, corrections.c.message_id == mid)
        ).first()
    return dict(row._mapping) if row else None


async def test_the_cards_correct_reading_opens_a_modal_and_saves_as_the_slack_agent(desk_gw, platforms):
    url = desk_gw["url"]
    slack_api: FakeSlack = platforms["slack"]
    more = [("<!channel> hello??", "complaint", "negative", "queued_ack"), ("anyone?", "complaint", "negative", "")]
    cid, mids, _ = conversation(desk_gw, NOT_UNDERSTOOD + more)
    card_ts = f"{int(time.time())}.{uuid.uuid4().int % 10**6:06d}"
    press = action("block_actions_claim", cid, card_ts, "U0AGENT2", action_id="desk_correct")
    trigger = f"{time.time():.0f}.{uuid.uuid4().hex}"
    press["payload"]["trigger_id"] = trigger
    async with aiohttp.ClientSession() as http:
        status, _ = await slack_post(http, url, "interactions", form=press)
        assert status == 200
        opened_call = await slack_api.wait_for("views.open", lambda c: c.params.get("trigger_id") == trigger, 30)
        assert opened_call.result["ok"], opened_call.result  # a view Slack takes (the local server checks it)
        opened = opened_call.result["view"]
        assert opened["callback_id"] == "desk_correct_view" and opened["private_metadata"] == cid
        shown = json.dumps(opened["blocks"])
        # The shopper's last 5 messages, their markup kept as text, with selects for each.
        assert "my thingy" not in shown and "&lt;!channel&gt; hello??" in shown and "<!channel>" not in shown
        selects = [b for b in opened["blocks"] if b["type"] == "input"]
        assert [b["block_id"] for b in selects[:2]] == [f"fix:{mids[1]}:intent", f"fix:{mids[1]}:sentiment"]
        assert len(selects) == 10
        # The intents to pick from: the policies' and out_of_scope (the intent model's labels).
        policies = yaml.safe_load((ROOT / "dialogue" / "policies.yaml").read_text(encoding="utf-8"))
        assert {o["value"] for o in selects[0]["element"]["options"]} == {*policies["intents"], "out_of_scope"}
        assert "The bot read: complaint (0.31)" == selects[0]["hint"]["text"]

        # Saved by someone outside the agents' channel: refused on the modal, nothing stored, audited.
        save = submission(opened, {mids[3]: ("contact_human_agent", "negative")}, user="U0NOTAGENT")
        status, text = await slack_post(http, url, "interactions", form=save)
        assert status == 200 and "Only the shop's agents" in text and f"fix:{mids[1]}:intent" in text, text
        assert correction_of(desk_gw, cid, mids[3]) is None
        # Nothing picked: the agent is told on the modal.
        status, text = await slack_post(http, url, "interactions", form=submission(opened, {}))
        assert status == 200 and "Pick an intent or a sentiment" in text, text

        # The agent's picks, stored as that Slack user (the verified payload's id).
        picks = {mids[3]: ("contact_human_agent", None), mids[4]: (None, "neutral")}
        status, text = await slack_post(http, url, "interactions", form=submission(opened, picks, "U0AGENT2"))
        assert status == 200 and "errors" not in text, text
        first, second = correction_of(desk_gw, cid, mids[3]), correction_of(desk_gw, cid, mids[4])
        assert first is not None and second is not None
        assert (first["agent"], first["intent"], first["sentiment"], first["model_intent"]) == (
            "slack:U0AGENT2", "contact_human_agent", None, "out_of_scope",
        )  # fmt: skip
        assert (second["intent"], second["sentiment"], second["text"]) == (None, "neutral", "<!channel> hello??")

        status, audit = await call(http, "GET", f"{url}/admin/api/audit?limit=100", desk_gw["admin"])
    mine = {(e["actor"], e["outcome"], (e["detail"] or {}).get("message_id")) for e in audit["entries"]
            if e["action"] == "desk.correct" and e["target"] == cid}  # fmt: skip
    assert {("slack:U0AGENT2", "ok", mids[3]), ("slack:U0AGENT2", "ok", mids[4])} <= mine, mine
    assert ("slack:U0NOTAGENT", "refused: not a desk agent", None) in mine, mine


def test_corrections_export_as_training_csv_and_leave_with_the_shopper(tmp_path, redis_server):
    """``python -m nlu.feedback export`` writes what nlu's reader takes, one task a file, importing nothing of
    the product; a shopper's corrections are in their data export and go when they are forgotten."""
    from admin import privacy
    from nlu.data import read_csv
    from shopbot.corrections import CorrectionStore

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = db.engine_for(url)
    store = ConversationStore.from_url(redis_server.url[: -len("/0")] + f"/{REDIS_DB}")
    cid = f"telegram:123456:{uuid.uuid4().int % 10**9}"
    meta = {"channel": "telegram", "sender": cid.rsplit(":", 1)[1]}
    said = [("where is my parcel, call me on 13812345678", "1-0"), ("return it", "2-0"), ("thx", "3-0")]
    rows = [
        transcripts.transcript_row(cid, meta, mid, "shopper", text, 1.0 + i, intent="review", sentiment="neutral",
                                   action="not_understood")
        for i, (text, mid) in enumerate(said)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(transcripts.messages.insert(), rows)
    fixes = CorrectionStore(engine, store, frozenset({"track_order", "get_refund"}))
    fixes.correct(cid, "1-0", "alice", "track_order", "negative")
    fixes.correct(cid, "2-0", "slack:U0AGENT1", "get_refund")
    fixes.correct(cid, "3-0", "bob", sentiment="positive")

    # A process that imports nlu.feedback and exports: no module of the product is loaded.
    product = ("shopbot", "gateway", "dialogue", "handoff", "workers", "channels")
    code = (
        "import sys; from nlu.feedback import main; "
        f"rc = main(['export', '--database-url', {url!r}, '--task', sys.argv[1], '--out', sys.argv[2]]); "
        f"assert not [m for m in sys.modules if m.split('.')[0] in {product!r}], 'imports the product'; "
        "sys.exit(rc)"
    )
    for task, expected in (
        ("intent", [(said[0][0], "track_order"), ("return it", "get_refund")]),
        ("sentiment", [(said[0][0], "negative"), ("thx", "positive")]),
    ):
        out = tmp_path / f"corrections-{task}.csv"
        done = subprocess.run(
            [sys.executable, "-c", code, task, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        examples, info = read_csv(out)
        assert [(e.text, e.label) for e in examples] == expected and info["rows"] == 2
    assert out.read_text(encoding="utf-8").splitlines()[0] == "text,label"
    late = subprocess.run(
        [sys.executable, "-m", "nlu.feedback", "export", "--database-url", url, "--task", "intent", "--out",
         str(tmp_path / "none.csv"), "--since", "2999-01-01"], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert late.returncode == 1 and "no intent corrections since 2999-01-01" in late.stderr
    assert not (tmp_path / "none.csv").exists()

    # The shopper's data export has them, masked; the transcript gone, they still find the shopper; forgotten.
    exported = privacy.export(store, engine, cid)
    assert [c["message_id"] for c in exported["corrections"]] == ["1-0", "2-0", "3-0"]
    assert "13812345678" not in json.dumps(exported["corrections"])
    with engine.begin() as conn:
        conn.execute(transcripts.messages.delete().where(transcripts.messages.c.conversation_id == cid))
    assert privacy.conversations_of(store, engine, "telegram", meta["sender"]) == [cid]
    assert privacy.forget(store, engine, [cid])["corrections"] == 3
    assert fixes.of_conversation(cid) == []
    assert privacy.conversations_of(store, engine, "telegram", meta["sender"]) == []
