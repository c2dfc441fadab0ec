"""The dialogue's abilities on the demo shop's real data (SQLite) and the real e5 encoder.

Annotations are written by hand here, so each path is taken on purpose; the
scripted conversations in test_conversations.py run the same paths through the
whole product with the NLU models.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dialogue import ConversationState, load_policy
from dialogue.catalog import parse_query
from dialogue.engine import Annotation, step
from dialogue.orders import OrderSourceError
from workers.dialogue_runner import customer_of

POLICY = load_policy()
OWNER = "5012347788"  # the demo order 10023's customer (a Telegram user id)


@pytest.fixture(scope="module")
def shop(demo_shop):
    return demo_shop


def ann(intent="track_order", lang="en", conf=0.95, sentiment="neutral", score=0.0):
    return Annotation(lang, intent, conf, sentiment, score)


def talk(shop, turns, customer=None, state=None):
    s, out = state or ConversationState(), []
    for text, a in turns:
        r = step(s, text, a, POLICY, 100.0, shop, customer)
        s = r.state
        out.append(r)
    return out


def test_the_owner_gets_the_tracking_number_others_get_no_order(shop):
    mine = talk(shop, [("where is order 10023", ann())], customer=OWNER)[0].replies[0]
    assert "SF1400512345678" in mine.text and "tracking number: SF1400512345678" in mine.facts
    # Another Telegram user: the order reads as unknown, so order numbers cannot be probed.
    theirs = talk(shop, [("where is order 10023", ann())], customer="777")[0].replies[0]
    assert theirs.text == POLICY.message("order_not_found", "en", order_number="10023")
    # The web does not say who is writing: status yes, tracking number and items no.
    anon = talk(shop, [("where is order 10023", ann())])[0].replies[0]
    assert "shipped" in anon.text and "SF1400512345678" not in anon.text + " ".join(anon.facts)


def test_the_order_number_is_asked_for_and_taken_from_a_later_message(shop):
    asked, answered = talk(shop, [("where is my order", ann()), ("oh it's 10022", ann("complaint", conf=0.2))])
    assert asked.replies[0].text == POLICY.message("ask_order_number", "en") and asked.state.awaiting
    assert "10022" in answered.replies[0].text and "DHL" in answered.replies[0].text
    # Where the channel knows the shopper, their own recent orders are offered as quick replies.
    known = talk(shop, [("where is my order", ann())], customer=OWNER)[0].replies[0]
    assert known.quick_replies == ("10023",)


@pytest.mark.parametrize(
    ("intent", "number", "message", "handoff"),
    [
        ("cancel_order", "10024", "cancel_possible", None),  # paid, not shipped: the shopper can cancel
        ("cancel_order", "10023", "cancel_shipped", "order_action"),  # shipped: a person
        ("cancel_order", "10026", "already_closed", None),
        ("change_order", "10025", "change_by_agent", "order_action"),
        ("change_order", "10021", "too_late", None),
        ("change_shipping_address", "10024", "change_by_agent", "order_action"),
        ("get_refund", "10021", "refund_return", None),  # delivered: the return route
        ("get_refund", "10027", "refund_dispute", "refund_dispute"),  # already refunded: a dispute
        ("track_refund", "10022", "refund_none", None),
    ],
)
def test_order_actions_follow_the_real_status(shop, intent, number, message, handoff):
    r = talk(shop, [(f"order {number}", ann(intent))])[0]
    text = r.replies[0].text
    assert text.startswith(POLICY.message(message, "en", order_number=number, status="{status}", total="{total}")[:20])
    assert (r.handoff.reason if r.handoff else None) == handoff
    if handoff:
        assert r.state.status == "queued" and r.handoff.priority == POLICY.priority[handoff]


def test_a_negative_refund_request_on_a_delivered_order_is_a_dispute(shop):
    upset = ann("get_refund", sentiment="negative", score=POLICY.mood.negative_score - 0.05)
    r = talk(shop, [("I never got my money back for 10021!", upset)])[0]
    assert r.handoff and r.handoff.reason == "refund_dispute"


def test_orders_in_chinese(shop):
    r = talk(shop, [("我的订单10022到哪了", ann(lang="zh"))])[0]
    assert r.replies[0].text.startswith("订单 10022 已由 DHL 发出") and "11月26日" in r.replies[0].text


def test_an_order_source_that_cannot_answer_is_said_plainly(shop):
    class Down:
        def get(self, number):
            raise OrderSourceError("order API unreachable")

    real = shop.orders
    shop.orders = Down()
    try:
        r = talk(shop, [("where is 10023", ann())])[0]
    finally:
        shop.orders = real
    assert r.replies[0].text == POLICY.message("order_source_down", "en") and r.handoff is None


def test_faq_in_both_languages_and_an_english_only_entry_from_chinese(shop):
    en = talk(shop, [("how much do you charge for shipping?", ann("delivery_options", conf=0.3))])[0].replies[0]
    assert en.kind == "faq" and "5.90 USD" in en.text
    zh = talk(shop, [("运费怎么算?", ann("delivery_options", lang="zh", conf=0.3))])[0].replies[0]
    assert zh.kind == "faq" and "5.90 美元" in zh.text
    only_en = talk(shop, [("包装环保吗?", ann("complaint", lang="zh", conf=0.2))])[0].replies[0]
    assert only_en.text.startswith(POLICY.message("faq_other_language", "zh")) and "recyclable" in only_en.text


def test_no_confident_answer_below_the_threshold(shop):
    for text, lang in [("what's the capital of France", "en"), ("帮我写一首诗", "zh")]:
        r = talk(shop, [(text, ann("review", lang=lang, conf=0.1))])[0]
        assert r.replies[0].kind == "fallback" and r.replies[0].text in (
            POLICY.message("not_understood_offer_agent", lang),
            POLICY.message("faq_did_you_mean", lang),
        )


def test_price_and_category_filters_are_read_in_both_languages():
    cats = POLICY.products.categories
    q = parse_query("do you have headphones under 150 dollars?", cats, POLICY.products.filler["en"])
    assert q.max_price == Decimal("150") and q.min_price is None and q.subject == "headphones"
    q = parse_query("有没有50到100元的玩具", cats, POLICY.products.filler["zh"])
    assert (q.min_price, q.max_price, q.category) == (Decimal("50"), Decimal("100"), "toys")
    q = parse_query("recommend skincare over $20", cats, POLICY.products.filler["en"])
    assert q.min_price == Decimal("20") and q.category == "beauty"
    assert parse_query("order 10023", cats).max_price is None


def test_products_found_filtered_and_suggested_from_recent_orders(shop):
    r = talk(shop, [("do you sell yoga mats?", ann("place_order", conf=0.2))])[0].replies[0]
    assert r.kind == "products" and "Yoga mat, 6 mm: 49.00 USD, in stock" in r.text
    cheap = talk(shop, [("do you have speakers under 100?", ann("place_order", conf=0.2))])[0].replies[0]
    assert cheap.text.startswith(POLICY.message("products_none", "en", filters=" up to 100")[:30])
    out_of_stock = talk(shop, [("do you have a mechanical keyboard?", ann("place_order", conf=0.2))])[0].replies[0]
    assert "Mechanical keyboard, compact: 99.00 USD, out of stock" in out_of_stock.text
    # The owner of 10023 (serum, sheet masks) gets beauty products they have not bought.
    mine = talk(shop, [("can you recommend something?", ann("place_order", conf=0.2))], customer=OWNER)[0].replies[0]
    tail = mine.text.splitlines()[-1]
    assert "Based on your recent orders" in tail and "Vitamin C serum" not in tail
    assert any(name in tail for name in ("Sunscreen", "Lip balm", "Hairbrush"))


def test_mood_apology_thanks_and_a_falling_trend(shop):
    # Just past the apology threshold (chosen by nlu.thresholds), and just short of it.
    below = POLICY.mood.negative_score - 0.05
    sad = talk(shop, [("my order 10024 is late", ann(sentiment="negative", score=below))])[0].replies[0]
    mild = talk(shop, [("my order 10024 is late", ann(sentiment="negative", score=below + 0.1))])[0].replies[0]
    assert not mild.text.startswith(POLICY.message("apology", "en"))
    assert sad.text.startswith(POLICY.message("apology", "en") + " Order 10024")
    happy = talk(shop, [("great, and order 10024?", ann(sentiment="positive", score=0.9))])[0].replies[0]
    assert happy.text.startswith(POLICY.message("thanks", "en"))
    # The mood falls over three messages: the conversation's hand-off priority goes up by one.
    turns = [
        ("10024", ann(sentiment="positive", score=0.6)),
        ("hmm", ann(sentiment="neutral", score=0.0)),
        ("this is bad", ann(sentiment="negative", score=-0.5)),
        ("a person please", ann("contact_human_agent")),
    ]
    results = talk(shop, turns)
    assert results[2].state.mood_boost == 1 and results[1].state.mood_boost == 0
    assert results[3].handoff.priority == POLICY.priority["requested"] + 1


def test_policy_can_hand_off_on_a_falling_mood(tmp_path, shop):
    import yaml

    raw = yaml.safe_load(Path(POLICY_FILE).read_text(encoding="utf-8"))
    raw["mood"]["on_falling"] = "handoff"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    policy = load_policy(path)
    s = ConversationState()
    for text, score in [("ok", 0.6), ("hmm", 0.0), ("bad", -0.5)]:
        r = step(
            s, text, ann("complaint", sentiment="negative" if score < 0 else "neutral", score=score), policy, 1.0, shop
        )
        s = r.state
    assert r.handoff and r.handoff.reason == "mood"


def test_customer_identity_comes_only_from_channels_that_vouch_for_it():
    assert customer_of({"channel": "telegram", "sender": OWNER}) == OWNER
    assert customer_of({"channel": "slack", "sender": "U123"}) == "U123"
    assert customer_of({"channel": "web", "sender": "abc"}) is None


POLICY_FILE = Path(__file__).resolve().parent.parent / "dialogue" / "policies.yaml"
