"""How a conversation's episodes end: "Did that help?", a rating after an agent, the end by silence, and the
outcome rows the transcript gets (the dialogue engine on the demo shop, the runner's sweep on a real Redis)."""

from __future__ import annotations

import json
import time

import pytest

from dialogue import ConversationState, load_policy
from dialogue.engine import Annotation, agent_claimed, close_episode, episode_end, resolved, step
from shopbot.store import CLOSING, TRANSCRIPTS, ConversationStore
from workers.dialogue_runner import close_idle

POLICY = load_policy()


def ann(intent="track_order", lang="en", conf=0.95, sentiment="neutral", score=0.0):
    return Annotation(lang, intent, conf, sentiment, score)


def talk(shop, turns, state=None, now=100.0):
    s, out = state or ConversationState(), []
    for text, a in turns:
        r = step(s, text, a, POLICY, now, shop)
        s, now = r.state, now + 1
        out.append(r)
    return out


def test_an_answer_from_the_shops_data_asks_once_whether_it_helped(shop_fixture):
    first, second = talk(
        shop_fixture,
        [("do you take apple pay?", ann("check_payment_methods")), ("how much is shipping?", ann("delivery_options"))],
    )
    assert first.action == "faq:payment-methods"
    ask = first.replies[-1]
    assert ask.text == POLICY.message("did_that_help", "en") and ask.quick_replies == ("Yes, thanks", "No")
    assert first.state.helped_pending and first.state.answered == "faq:payment-methods"
    # Once an episode: the next answer comes without the question.
    assert second.action.startswith("faq:") and POLICY.message("did_that_help", "en") not in _said(second)
    assert not second.state.helped_pending and second.state.answered == second.action


def test_yes_resolves_the_episode_and_no_offers_a_person(shop_fixture):
    asked = ("do you take apple pay?", ann("check_payment_methods"))
    _, yes = talk(shop_fixture, [asked, ("Yes, thanks", ann())])
    assert yes.action == "helped:yes" and yes.replies[0].text == POLICY.message("helped_yes", "en")
    assert yes.events == (("helped:yes", "faq:payment-methods"), ("outcome:resolved_bot", "confirmed"))
    assert yes.state.opened_at is None and not yes.state.helped_asked
    # The next message opens a new episode, which may ask again.
    again = talk(shop_fixture, [asked], state=yes.state)[0]
    assert again.state.opened_at is not None and again.replies[-1].text == POLICY.message("did_that_help", "en")

    asked = ("您接受 Apple Pay 吗?", ann("check_payment_methods", "zh"))
    _, no = talk(shop_fixture, [asked, ("没有帮助", ann(lang="zh"))])
    assert no.action == "helped:no" and no.events == (("helped:no", "faq:payment-methods"),)
    assert no.replies[0].quick_replies == POLICY.quick_replies("zh", "talk_to_person_quick_replies")
    # Silence after "no" is no resolution.
    _, outcome = close_episode(no.state, 2000.0)
    assert outcome == ("outcome:abandoned", "helped:no")


def test_the_buttons_count_only_right_after_the_question(shop_fixture):
    # "No" typed later, or as an answer to something else, is an ordinary message.
    out = talk(
        shop_fixture,
        [("do you take apple pay?", ann("check_payment_methods")), ("where is order 10021", ann()), ("No", ann())],
    )
    assert out[1].action == "order:track_order" and out[2].action != "helped:no" and not out[2].events
    # An answer with buttons of its own (what to do with an order) keeps them: no question.
    bare = talk(shop_fixture, [("10021", ann(conf=0.2))])[0]
    assert bare.action == "ask_order_action" and not bare.state.helped_asked


def test_an_episode_ends_by_silence_as_what_it_was():
    s = ConversationState(opened_at=1.0, answered="faq:express", updated_at=5.0)
    assert close_episode(s, 2000.0)[1] == ("outcome:resolved_bot", "idle")
    s = ConversationState(opened_at=1.0, last_action="not_understood")
    assert close_episode(s, 2000.0)[1] == ("outcome:abandoned", "not_understood")
    s = ConversationState(opened_at=1.0, status="queued", handoff_reason="angry")
    ended, outcome = close_episode(s, 2000.0)
    assert outcome == ("outcome:handed_off", "angry") and ended.opened_at is None
    # A person has it: a day; the bot: the idle time.
    assert episode_end(s, POLICY, 10.0) == 10.0 + POLICY.outcomes.agent_idle_s
    assert episode_end(ConversationState(opened_at=1.0), POLICY, 10.0) == 10.0 + POLICY.outcomes.idle_s
    assert episode_end(ConversationState(), POLICY, 10.0) == 0


def test_an_agent_resolving_asks_for_a_rating_once():
    queued = step(ConversationState(), "agent please", ann("contact_human_agent"), POLICY, 1.0).state
    claimed, _ = agent_claimed(queued, "alice", POLICY, 2.0)
    back, notice, outcome = resolved(claimed, POLICY, 3.0)
    assert outcome == ("outcome:resolved_agent", "requested") and back.opened_at is None
    assert notice.quick_replies == ("1", "2", "3", "4", "5") and back.csat_pending
    rated = step(back, "4", ann(conf=0.1), POLICY, 4.0)
    assert rated.action == "csat" and rated.events == (("csat:4", ""),) and not rated.state.csat_pending
    assert rated.replies[0].text == POLICY.message("csat_thanks", "en")
    # Anything else after the question is an ordinary message, and a later "5" is no rating.
    other = step(back, "where is my order", ann(), POLICY, 4.0)
    assert other.action == "ask:order_number" and not other.events
    assert step(other.state, "5", ann(conf=0.1), POLICY, 5.0).action != "csat"


def _said(result) -> str:
    return " ".join(r.text for r in result.replies)


@pytest.fixture(scope="module")
def shop_fixture(demo_shop):
    return demo_shop


def test_the_sweep_ends_silent_episodes_once_with_an_outcome_row(redis_server):
    store = ConversationStore.from_url(redis_server.url[: -len("/0")] + "/12")  # a database of its own
    store.r.flushdb()
    cid = f"web:outcomes-{time.time_ns()}"
    store.create(cid, {"channel": "web", "sender": "p1"})
    state = ConversationState(opened_at=time.time() - 5000, answered="faq:express", updated_at=time.time() - 1000)
    with store.lock(cid) as token:
        store.commit(cid, token, state.to_dict(), close_at=time.time() - 1)
    # Another conversation wrote a moment ago: its episode is not due yet, even if its entry says so.
    fresh = f"web:outcomes-fresh-{time.time_ns()}"
    store.create(fresh, {"channel": "web"})
    with store.lock(fresh) as token:
        recent = ConversationState(opened_at=time.time() - 10, updated_at=time.time())
        store.commit(fresh, token, recent.to_dict(), close_at=time.time() - 1)

    assert close_idle(store, POLICY) == 1
    assert close_idle(store, POLICY) == 0  # once
    rows = [json.loads(r) for r in store.r.lrange(TRANSCRIPTS, 0, -1)]
    assert [(r["conversation_id"], r["sender"], r["action"], r["detail"]) for r in rows] == [
        (cid, "event", "outcome:resolved_bot", "idle")
    ]
    assert ConversationState.from_dict(store.state(cid)).opened_at is None
    due = store.r.zscore(CLOSING, fresh)
    assert due is not None and due > time.time() + POLICY.outcomes.idle_s - 60
    assert store.r.zscore(CLOSING, cid) is None
