"""The dialogue state machine with plain function calls (no Redis, no models)."""

from __future__ import annotations

import pytest
import yaml

from dialogue import Annotation, ConversationState, PolicyError, load_policy, step
from dialogue.engine import agent_claimed, resolved
from dialogue.policy import DEFAULT_FILE

POLICY = load_policy()
INTENTS_27 = {
    "cancel_order", "change_order", "change_shipping_address", "check_cancellation_fee", "check_invoice",
    "check_payment_methods", "check_refund_policy", "complaint", "contact_customer_service", "contact_human_agent",
    "create_account", "delete_account", "delivery_options", "delivery_period", "edit_account", "get_invoice",
    "get_refund", "newsletter_subscription", "payment_issue", "place_order", "recover_password",
    "registration_problems", "review", "set_up_shipping_address", "switch_account", "track_order", "track_refund",
}  # fmt: skip


def ann(intent="track_order", conf=0.9, lang="en", sentiment="neutral", score=0.0) -> Annotation:
    return Annotation(lang, intent, conf, sentiment, score)


def test_every_intent_has_a_reply_in_both_languages():
    assert set(POLICY.intents) == INTENTS_27
    for name in INTENTS_27 - POLICY.handoff_intents:
        for lang in ("en", "zh"):
            r = step(ConversationState(), "x 12345", ann(name, lang=lang), POLICY, 1.0)
            assert r.replies and r.handoff is None, name
            text = r.replies[0].text
            assert "{" not in text
            assert any("\u4e00" <= c <= "\u9fff" for c in text) == (lang == "zh"), (name, lang, text)


def test_asks_for_the_order_number_and_remembers_it():
    r = step(ConversationState(), "where is my order", ann(), POLICY, 1.0)
    assert r.replies[0].text == POLICY.message("ask_order_number", "en")
    assert r.state.awaiting == {"intent": "track_order", "slot": "order_number"}
    # The next message gives it, whatever the model makes of it.
    r = step(r.state, "it's 10023", ann("review", conf=0.2), POLICY, 2.0)
    assert "10023" in r.replies[0].text and r.state.slots == {"order_number": "10023"}
    # Later intents that need it use the remembered one.
    r = step(r.state, "cancel it please", ann("cancel_order"), POLICY, 3.0)
    assert "10023" in r.replies[0].text and r.state.awaiting is None


def test_order_number_in_chinese_text_and_with_letters():
    r = step(ConversationState(), "我的订单A-48213到哪了", ann(lang="zh"), POLICY, 1.0)
    assert "A-48213" in r.replies[0].text and r.state.locale == "zh"


def test_contact_human_agent_hands_off_and_the_bot_goes_silent():
    r = step(ConversationState(), "agent please", ann("contact_human_agent"), POLICY, 5.0)
    assert r.handoff and r.handoff.reason == "requested" and r.handoff.priority == POLICY.priority["requested"]
    assert r.state.status == "queued" and r.state.queued_at == 5.0
    assert r.replies[0].sender == "system" and r.replies[0].text == POLICY.message("handoff", "en")
    s, notice = agent_claimed(r.state, "alice", POLICY, 6.0)
    assert s.status == "agent" and s.agent == "alice" and notice.text == POLICY.message("agent_joined", "en")
    quiet = step(s, "where is my order", ann(), POLICY, 7.0)
    assert quiet.replies == () and quiet.handoff is None and quiet.state.status == "agent"
    s, notice, outcome = resolved(quiet.state, POLICY, 8.0)
    assert s.status == "bot" and s.agent is None and notice.text.startswith(POLICY.message("back_to_bot", "en"))
    assert outcome == ("outcome:resolved_agent", "requested") and s.opened_at is None
    assert step(s, "where is my order", ann(), POLICY, 9.0).replies


def test_two_misunderstood_messages_in_a_row_hand_off():
    r = step(ConversationState(), "blorp", ann(conf=0.1), POLICY, 1.0)
    assert r.replies[0].text == POLICY.message("not_understood", "en") and r.replies[0].quick_replies
    assert r.handoff is None
    r = step(r.state, "blorp blorp", ann(conf=0.1), POLICY, 2.0)
    assert r.handoff and r.handoff.reason == "not_understood"
    # One understood message in between resets the count.
    r1 = step(ConversationState(), "blorp", ann(conf=0.1), POLICY, 1.0)
    r2 = step(r1.state, "refund policy?", ann("check_refund_policy"), POLICY, 2.0)
    r3 = step(r2.state, "blorp", ann(conf=0.1), POLICY, 3.0)
    assert r3.handoff is None


def test_an_angry_shopper_gets_an_apology_then_a_person_and_anger_in_the_queue_raises_priority():
    angry = ann("complaint", sentiment="negative", score=-0.95)
    where = ann("track_order", sentiment="negative", score=-0.95)
    first = step(ConversationState(), "where is my parcel, this is outrageous", where, POLICY, 1.0)
    # The first angry message gets an apology with the answer; the next one in a row, a person.
    assert POLICY.angry_handoff_after == 2 and first.handoff is None
    assert first.replies[0].text.startswith(POLICY.message("apology", "en"))
    r = step(first.state, "are you even listening", angry, POLICY, 2.0)
    assert r.handoff and r.handoff.reason == "angry" and r.handoff.priority == POLICY.priority["angry"]
    assert r.replies[0].text == POLICY.message("handoff_angry", "en")
    # Angry with nothing to answer but "tell me what happened" (angry_handoff_intents): a person at once.
    assert "complaint" in POLICY.angry_handoff_intents
    at_once = step(ConversationState(), "you idiots, worst shop ever", angry, POLICY, 1.0)
    assert at_once.handoff and at_once.handoff.reason == "angry" and at_once.action == "handoff"
    waiting = step(ConversationState(), "agent", ann("contact_human_agent"), POLICY, 1.0).state
    r = step(waiting, "still nobody?!", angry, POLICY, 2.0)
    # Waiting: the message is acknowledged (not answered), and its anger moves the conversation up.
    assert r.action == "queued_ack" and r.replies[0].text == POLICY.message("queued_ack", "en")
    assert r.handoff and r.state.priority == POLICY.priority["angry"]
    mild = step(ConversationState(), "a bit late", ann("complaint", sentiment="negative", score=-0.3), POLICY, 1.0)
    assert mild.handoff is None


def test_other_language_keeps_the_conversation_locale():
    r = step(ConversationState(locale="zh"), "10023", ann(lang="other"), POLICY, 1.0)
    assert r.state.locale == "zh" and any("\u4e00" <= c <= "\u9fff" for c in r.replies[0].text)


def test_state_round_trips_through_json():
    r = step(ConversationState(), "where is my order", ann(), POLICY, 1.0)
    assert ConversationState.from_dict(r.state.to_dict()) == r.state
    assert ConversationState.from_dict({**r.state.to_dict(), "field_from_a_newer_version": 1}) == r.state


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.pop("thresholds"), "missing 'thresholds'"),
        (lambda raw: raw["messages"]["handoff"].pop("zh"), "messages.handoff"),
        (lambda raw: raw["intents"]["track_order"].update(needs=["email"]), "needs slot 'email'"),
        (lambda raw: raw["slots"]["order_number"].update(pattern="(["), "not a valid regular expression"),
        (lambda raw: raw["thresholds"].update(min_intent_confidence="high"), "not a number"),
        (lambda raw: raw["orders"].update(bogus=1), "p.yaml: orders: unknown setting"),  # not "not a number"
        (lambda raw: raw.update(about_the_shop={"en": "(["}), "about_the_shop.en is not a valid regular expression"),
    ],
)
def test_policy_errors_say_what_is_wrong(tmp_path, edit, message):
    raw = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_policy(path)


def test_policy_file_missing_or_not_yaml(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("text", "lang", "talk"),
    [("hi", "en", "greeting"), ("Good morning!", "en", "greeting"), ("ok thanks!", "en", "thanks"),
     ("你好", "zh", "greeting"), ("亲，在吗？", "zh", "greeting"), ("好的，谢谢", "zh", "thanks")],
)  # fmt: skip
def test_a_greeting_or_thanks_alone_gets_its_own_reply_whatever_the_intent_model_says(text, lang, talk):
    # The intent model has no greeting class: it may call "你好" a request for a person, sure of it.
    r = step(ConversationState(), text, ann("contact_human_agent", conf=0.9, lang=lang), POLICY, 1.0)
    assert r.handoff is None and r.replies[0].text == POLICY.small_talk[talk].reply[lang]
    assert r.state.misunderstood == 0


def test_a_greeting_with_a_request_is_the_request_and_anger_is_not_small_talk():
    r = step(ConversationState(), "hi, where is my order", ann(), POLICY, 1.0)
    assert r.replies[0].text == POLICY.message("ask_order_number", "en")
    angry = ann("complaint", sentiment="negative", score=-0.95)
    r = step(ConversationState(), "thanks for nothing", angry, POLICY, 1.0)
    assert r.action == "handoff" and r.handoff.reason == "angry"  # not "you're welcome"


def test_a_sure_out_of_scope_request_is_told_what_the_bot_can_do():
    r = step(ConversationState(), "write me a poem", ann("out_of_scope", conf=0.95), POLICY, 1.0)
    # Understood (not a shop matter): no step towards the not-understood hand-off, however many.
    assert r.replies[0].text == POLICY.out_of_scope["en"] and r.state.misunderstood == 0
    again = step(r.state, "and the weather tomorrow?", ann("out_of_scope", conf=0.95), POLICY, 2.0)
    assert again.action == "out_of_scope" and again.handoff is None
    unsure = step(ConversationState(), "blorp", ann("out_of_scope", conf=0.3), POLICY, 1.0)
    assert unsure.replies[0].text == POLICY.message("not_understood", "en")
