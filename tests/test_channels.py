"""Telegram and Slack adapters against recorded platform payloads (tests/fixtures): parsing and signatures."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from platforms import slack_headers

from channels import slack, telegram
from channels.base import ChannelError
from handoff.queue import QueueItem
from handoff.slack_desk import (
    CLAIM,
    CORRECT,
    CORRECT_VIEW,
    NOTE,
    RESOLVE,
    card_blocks,
    correction_modal,
    picked_corrections,
    trend,
)

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT = "123456"


def fixture(platform: str, name: str) -> dict:
    return json.loads((FIXTURES / platform / f"{name}.json").read_text(encoding="utf-8"))


# -- Telegram ---------------------------------------------------------------------------------


def test_telegram_text_message_becomes_an_inbound_message():
    p = telegram.parse_update(fixture("telegram", "text_message")["body"], ACCOUNT)
    assert p.kind == "message" and p.callback_query_id is None
    m = p.message
    assert (m.channel, m.account, m.chat_id, m.sender_id) == ("telegram", ACCOUNT, "5012347788", "5012347788")
    assert m.conversation_id == "telegram:123456:5012347788"
    assert m.text == "where is my order?" and m.locale == "en" and m.id == "tg-731004501"
    assert m.sent_at == 1763900000


def test_telegram_start_edit_and_non_text():
    start = telegram.parse_update(fixture("telegram", "start_zh")["body"], ACCOUNT)
    assert start.kind == "start" and start.message.locale == "zh"
    edited = telegram.parse_update(fixture("telegram", "edited_message")["body"], ACCOUNT)
    assert edited.kind == "message" and edited.message.text == "where is my parcel?"
    assert edited.message.id != telegram.parse_update(fixture("telegram", "text_message")["body"], ACCOUNT).message.id
    for name in ("sticker", "photo", "voice"):
        p = telegram.parse_update(fixture("telegram", name)["body"], ACCOUNT)
        assert p.kind == "unsupported" and p.message.conversation_id == "telegram:123456:5012347788", name


@pytest.mark.parametrize("name", ["from_bot", "group_message", "my_chat_member"])
def test_telegram_updates_we_do_not_answer(name):
    assert telegram.parse_update(fixture("telegram", name)["body"], ACCOUNT).kind == "ignored"


def test_telegram_callback_query_is_the_pressed_buttons_text():
    p = telegram.parse_update(fixture("telegram", "callback_query")["body"], ACCOUNT)
    assert p.kind == "message" and p.callback_query_id == "4382bfdwdsb323b2d9"
    assert p.message.text == "Track my order"
    assert telegram.answer_callback(p.callback_query_id) == {
        "method": "answerCallbackQuery",
        "callback_query_id": "4382bfdwdsb323b2d9",
    }


@pytest.mark.parametrize("body", [[], {"message": {}}, {"update_id": "7"}, "text"])
def test_telegram_malformed_updates_are_400(body):
    with pytest.raises(ChannelError) as exc:
        telegram.parse_update(body, ACCOUNT)
    assert exc.value.status == 400


def test_telegram_secret_token_check():
    telegram.check_secret("s3cret-token", "s3cret-token")
    for header, secret, status in [(None, "s", 401), ("", "s", 401), ("wrong", "s3cret", 403), ("x", None, 503)]:
        with pytest.raises(ChannelError) as exc:
            telegram.check_secret(header, secret)
        assert exc.value.status == status
    assert telegram.account_of("123456:ABC-def") == "123456"


# -- Slack -----------------------------------------------------------------------------------

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def signed(body: bytes, **kw) -> dict[str, str]:
    return slack_headers(SECRET, body, **kw)


def test_slack_signature_valid_missing_wrong_stale():
    body = json.dumps(fixture("slack", "message_im")["body"]).encode()
    slack.verify(signed(body), body, SECRET)
    cases = [
        ({}, 401),
        ({**signed(body), "X-Slack-Signature": "v0=" + "0" * 64}, 403),
        (signed(body, ts=int(time.time()) - 301), 403),
        (signed(body + b" "), 403),  # body changed after signing
        ({**signed(body), "X-Slack-Request-Timestamp": "yesterday"}, 401),
    ]
    for headers, status in cases:
        with pytest.raises(ChannelError) as exc:
            slack.verify(headers, body, SECRET)
        assert exc.value.status == status, headers
    with pytest.raises(ChannelError) as exc:
        slack.verify(signed(body), body, None)
    assert exc.value.status == 503


def test_slack_events():
    assert slack.parse_event(fixture("slack", "url_verification")["body"]).challenge.startswith("3eZbrw1aBm2")
    im = slack.parse_event(fixture("slack", "message_im")["body"], "C0AGENTS")
    assert im.kind == "shopper" and im.event_id == "Ev0SHOP0001"
    assert im.message.conversation_id == "slack:T0SHOP:D0SHOPPER" and im.message.text == "where is my order?"
    mention = slack.parse_event(fixture("slack", "app_mention")["body"], "C0AGENTS")
    assert mention.kind == "shopper" and mention.message.text == "do you ship to Canada?"
    # In a shared channel the conversation is the user's own, not the channel's.
    assert mention.message.conversation_id == "slack:T0SHOP:C0GENERAL.U0SHOPPER"
    other = fixture("slack", "app_mention")["body"]
    other["event"]["user"] = "U0SOMEONE"
    assert slack.parse_event(other, "C0AGENTS").message.conversation_id == "slack:T0SHOP:C0GENERAL.U0SOMEONE"
    for name in ("bot_message", "message_changed"):
        assert slack.parse_event(fixture("slack", name)["body"], "C0AGENTS").kind == "ignored", name
    body = fixture("slack", "agent_thread_reply")["body"]
    body["event"]["thread_ts"] = "1763900000.000001"
    reply = slack.parse_event(body, "C0AGENTS")
    assert reply.kind == "agent_reply" and reply.thread_ts == "1763900000.000001"
    assert reply.message.sender_id == "U0AGENT1" and reply.message.chat_id == "C0AGENTS"  # the desk's channel
    body["event"].pop("thread_ts")
    assert slack.parse_event(body, "C0AGENTS").kind == "ignored"  # the agents' channel, not a card's thread


def test_slack_quick_reply_press_is_a_shopper_message():
    payload = fixture("slack", "block_actions_quick_reply")["form"]["payload"]
    m = slack.quick_reply_message(payload)
    assert m.conversation_id == "slack:T0SHOP:D0SHOPPER" and m.text == "Talk to a person"
    payload["channel"] = {"id": "C0GENERAL", "name": "general"}  # a button of an ephemeral reply in a channel
    assert slack.quick_reply_message(payload).conversation_id == f"slack:T0SHOP:C0GENERAL.{payload['user']['id']}"
    claim = fixture("slack", "block_actions_claim")["form"]["payload"]
    assert slack.quick_reply_message(claim) is None
    blocks = slack.message_blocks("Hi", ("Track my order", "Talk to a person"))
    assert [e["value"] for e in blocks[1]["elements"]] == ["Track my order", "Talk to a person"]


def test_slack_form_payload_errors():
    with pytest.raises(ChannelError):
        slack.form_payload(b"payload=not-json")
    with pytest.raises(ChannelError):
        slack.form_payload(b"nothing=here")


# -- the agents' desk cards ----------------------------------------------------------------


def _item(status: str, agent: str | None = None) -> QueueItem:
    return QueueItem(
        conversation_id="telegram:123456:42",
        channel="telegram",
        status=status,
        priority=3,
        reason="angry",
        waiting_s=125.0,
        locale="zh",
        last_intents=["track_order", "complaint"],
        sentiment_scores=[0.1, -0.4, -0.9],
        agent=agent,
        last_messages=[{"from": "shopper", "text": "我的快递到哪了"}, {"from": "bot", "text": "请提供订单号"}],
    )


def test_cards_show_the_context_and_the_actions_of_each_state():
    def actions(blocks):
        return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]

    queued = card_blocks(_item("queued"), {"sender": "42"}, 2, 5)
    text = json.dumps(queued, ensure_ascii=False)
    for shown in ("2 of 5", "angry", "track_order", "complaint", "我的快递到哪了", "zh", "falling", "telegram"):
        assert shown in text, shown
    assert actions(queued) == [CLAIM, CORRECT]
    claimed = card_blocks(_item("agent", "U0AGENT1"), {}, None, 4)
    assert "<@U0AGENT1>" in json.dumps(claimed) and actions(claimed) == [NOTE, RESOLVE, CORRECT]
    assert actions(card_blocks(_item("bot"), {}, None, 4)) == [CORRECT]  # labelling after the hand-off too
    assert "offered for labelling" not in text
    lost = card_blocks(dataclasses.replace(_item("queued"), reason="not_understood"), {}, 1, 1)
    assert "did not understand this shopper: their messages are offered for labelling" in json.dumps(lost)
    assert trend([0.5, 0.4]).endswith("(steady)") and trend([]) == "no messages scored yet"
    # A shopper's markup stays text on the card: no channel ping, fake mention or disguised link.
    said = [{"from": "shopper", "text": "<!channel> see <https://evil.example|your orders> <@U0BOSS>"}]
    sly = dataclasses.replace(_item("queued"), last_messages=said)
    shown = json.dumps(card_blocks(sly, {"sender": "<!here>"}, 1, 1))
    for live in ("<!channel>", "<!here>", "<https://evil", "<@U0BOSS>"):
        assert live not in shown, live
    assert "&lt;!channel&gt;" in shown and "&lt;!here&gt;" in shown


def test_the_correct_reading_modal_shows_the_readings_and_gives_back_what_was_picked():
    said = [
        {"message_id": "17-0", "text": "<@U0BOSS> *where*", "intent": "review", "intent_confidence": 0.4,
         "sentiment": "neutral"},
        {"message_id": "18-0", "text": "hm", "intent": None, "intent_confidence": None, "sentiment": None},
    ]  # fmt: skip
    view = correction_modal("web:default:abc", said, ["complaint", "out_of_scope"])
    assert (view["callback_id"], view["private_metadata"], view["submit"]["text"]) == (
        CORRECT_VIEW, "web:default:abc", "Save",
    )  # fmt: skip
    assert "&lt;@U0BOSS&gt;" in json.dumps(view) and "<@U0BOSS>" not in json.dumps(view)
    hints = [b["hint"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert hints == ["The bot read: review (0.40)", "The bot read: neutral", "The bot read: ?", "The bot read: ?"]
    assert all(b["optional"] for b in view["blocks"] if b["type"] == "input")  # empty: read right
    assert "submit" not in correction_modal("web:default:abc", [], ["complaint"])  # nothing to correct
    state = {
        "fix:17-0:intent": {"label": {"type": "static_select", "selected_option": {"value": "complaint"}}},
        "fix:17-0:sentiment": {"label": {"type": "static_select", "selected_option": None}},
        "fix:18-0:intent": {"label": {"type": "static_select", "selected_option": None}},
        "fix:18-0:sentiment": {"label": {"type": "static_select", "selected_option": {"value": "negative"}}},
        "note": {"text": {"value": "not ours"}},
        "fix:19-0:intent": {"label": "not an object"},
    }
    assert picked_corrections({"state": {"values": state}}) == {
        "17-0": {"intent": "complaint", "sentiment": None},
        "18-0": {"intent": None, "sentiment": "negative"},
    }
    assert picked_corrections({"state": "odd"}) == {} and picked_corrections({}) == {}


def test_empty_settings_mean_unset_and_secrets_do_not_print(monkeypatch):
    from shopbot.settings import Settings

    monkeypatch.setenv("SHOPBOT_SLACK_BOT_TOKEN", "")  # what docker compose passes for an unset ${VAR:-}
    monkeypatch.setenv("SHOPBOT_TELEGRAM_BOT_TOKEN", "123456:very-secret")
    s = Settings()
    assert s.slack_bot_token is None and s.telegram_bot_token is not None
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())


def test_a_reply_to_a_slack_shopper_is_text_not_markup(platforms):
    """A reply may quote what the shopper wrote ("couldn't find ..."): on the wire it is escaped, so
    <!channel>, <@U...> and <https://evil|innocent> do not ping, mention or disguise a link."""
    from services import SLACK_TOKEN

    sender = slack.SlackSender(SLACK_TOKEN, platforms["slack_url"])
    sender.send("D0SHOPPER", 'Sorry, I couldn\'t find "<!channel> <@U0AGENT1> <https://evil|shop> & co"', ("Talk",))
    call = platforms["slack"].of("chat.postMessage")[-1]
    shown = call.params["blocks"][0]["text"]["text"]
    assert "<" not in shown and "<" not in call.params["text"]
    assert "&lt;!channel&gt; &lt;@U0AGENT1&gt; &lt;https://evil|shop&gt; &amp; co" in shown
    assert call.params["blocks"][1]["elements"][0]["text"] == {"type": "plain_text", "text": "Talk"}


def test_a_reply_in_a_shared_slack_channel_is_seen_by_its_shopper_alone(platforms):
    from services import SLACK_TOKEN

    api = platforms["slack"]
    sender = slack.SlackSender(SLACK_TOKEN, platforms["slack_url"])
    posted = len(api.of("chat.postMessage"))
    sender.send(slack.chat_key("C0GENERAL", "U0SHOPPER"), "Order 10023 <b>: shipped", ("Track",))
    call = api.of("chat.postEphemeral")[-1]
    assert call.params["channel"] == "C0GENERAL" and call.params["user"] == "U0SHOPPER"
    assert call.params["text"] == "Order 10023 &lt;b&gt;: shipped"
    assert call.params["blocks"][1]["elements"][0]["value"] == "Track"
    assert len(api.of("chat.postMessage")) == posted  # nothing posted for the whole channel to see
    assert slack.chat_key("D0SHOPPER", "U0SHOPPER") == "D0SHOPPER"
