"""One dialogue step: a shopper message and its NLU annotation in, replies and state out.

Pure: no I/O. The worker loads the state, calls :func:`step`, and commits the
result to Redis in one transaction.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cached_property

import numpy as np

from . import answers
from .catalog import ProductQuery, parse_query
from .knowledge import decide
from .orders import OrderSourceError
from .policy import FaqTexts, Policy
from .retrieval import clauses, decode, key, price_bound, product_signal
from .state import ConversationState

# The intent model's class for what a shop's bot cannot serve (poems, weather, other
# businesses): never a confident intent, whatever its confidence.
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class Annotation:
    language: str
    intent: str
    intent_confidence: float
    sentiment: str
    sentiment_score: float
    # Retrieval vectors the NLU pass computed, by dialogue.retrieval.key of their text: the step embeds
    # only what is not here.
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Annotation:
        return cls(
            language=str(d["language"]),
            intent=str(d["intent"]),
            intent_confidence=float(d["intent_confidence"]),  # type: ignore[arg-type]
            sentiment=str(d["sentiment"]),
            sentiment_score=float(d["sentiment_score"]),  # type: ignore[arg-type]
            vectors=decode(d.get("vectors")),
        )


@dataclass(frozen=True)
class Reply:
    text: str
    sender: str = "bot"  # bot | system
    quick_replies: tuple[str, ...] = ()
    # What the text states, from the shop's data; an LLM may rephrase the text from these and
    # nothing else (dialogue/llm.py). Never sent to the shopper.
    facts: tuple[str, ...] = ()
    kind: str = "template"  # template | order | faq | products | fallback | small_talk


@dataclass(frozen=True)
class Handoff:
    reason: str  # requested | angry | not_understood | order_action | refund_dispute | mood
    priority: int


@dataclass(frozen=True)
class StepResult:
    state: ConversationState
    replies: tuple[Reply, ...] = ()
    handoff: Handoff | None = None
    # What the bot did, for logs, analytics and the conversation tests (tests/conversations/README.md):
    # order:INTENT, order_not_found, ask:SLOT, ask_order_action, faq:ENTRY, answer:INTENT, did_you_mean,
    # products, products_none, small_talk:greeting|thanks, out_of_scope, not_understood, handoff,
    # queued_ack, helped:yes|no, csat, silent.
    action: str = "silent"
    # What the transcript records beside the messages, as (event, detail): helped:yes|no (detail: the answer
    # rated), csat:1..5, outcome:resolved_bot|resolved_agent|handed_off|abandoned (detail: why).
    events: tuple[tuple[str, str], ...] = ()


def extract_slot(policy: Policy, slot: str, text: str) -> str | None:
    pattern = policy.slot_patterns.get(slot)
    m = pattern.search(text) if pattern else None
    return (m.group(1) if m.groups() else m.group(0)).upper() if m else None


@dataclass
class _Turn:
    """One step's inputs, so the helpers below need not pass six arguments each."""

    policy: Policy
    s: ConversationState
    text: str
    ann: Annotation
    now: float
    shop: object | None  # dialogue.shop.Shop, or None: templates only
    customer: str | None  # who the channel says is writing (a Telegram or Slack user id), None when anonymous

    @cached_property
    def near(self) -> list:
        """The FAQ entries closest to the message, best first (embedded once, when first asked for)."""
        shop = self.shop
        return shop.faq(self.vector(self.text), k=5) if shop is not None else []  # type: ignore[attr-defined]

    def vector(self, text: str):
        """The retrieval vector of ``text``: the one the NLU pass computed, or embedded here."""
        found = self.ann.vectors.get(key(text))
        return found if found is not None else self.shop.vector(text)  # type: ignore[union-attr]

    @cached_property
    def faq(self):
        """The knowledge base's own decision on them (dialogue.knowledge.FaqDecision), None without a shop."""
        if self.shop is None:
            return None
        fp = self.policy.faq
        # A clear lead answers below answer_score unless the intent model is sure no shop business is asked.
        ann = self.ann
        floor = (
            fp.clear_lead_out_of_scope if fp.clear_lead_out_of_scope is not None else self.policy.min_intent_confidence
        )
        clear = None if ann.intent == OUT_OF_SCOPE and ann.intent_confidence >= floor else fp.clear_lead
        return decide(self.near[:3], fp.answer_score, fp.suggest_score, fp.min_lead, clear)

    @cached_property
    def clause_entries(self) -> list:
        """The FAQ entries the knowledge base is sure of for the parts of a message of several (in order, each
        once): none for a message of one part (dialogue.retrieval.clauses); searched once, when first asked for."""
        parts = clauses(self.text) if self.shop is not None else []
        fp, entries = self.policy.faq, []
        for part in parts:
            hits = self.shop.faq(self.vector(part), k=5)  # type: ignore[union-attr]
            d = decide(hits[:3], fp.answer_score, fp.suggest_score, fp.min_lead)
            if d.action == "answer" and all(e.id != d.hits[0].entry.id for e in entries):
                entries.append(d.hits[0].entry)
        return entries

    @cached_property
    def catalogue(self):
        """The catalogue's answer to the message as a product question (searched once, when first asked for)."""
        return _search_products(self)

    @property
    def lang(self) -> str:
        return self.s.locale

    def msg(self, name: str, **values: object) -> str:
        return self.policy.message(name, self.lang, **values)

    def qr(self, name: str = "quick_replies") -> tuple[str, ...]:
        return self.policy.quick_replies(self.lang, name)

    def faq_texts(self) -> FaqTexts:
        """The shop's FAQ answers in the shopper's language (where written), for texts that quote them."""
        out = FaqTexts()
        kb = getattr(self.shop, "kb", None)
        for entry in getattr(kb, "entries", ()):
            out[entry.id] = entry.answer_in(self.lang)[0]
        return out


def _answer(policy: Policy, s: ConversationState, intent: str) -> StepResult:
    ip = policy.intents[intent]
    lang = s.locale
    qr = ip.quick_replies.get(lang, ())
    return StepResult(s, (Reply(ip.texts[lang].format(**s.slots), quick_replies=qr),), action=f"answer:{intent}")


def _hand_off(policy: Policy, s: ConversationState, reason: str, now: float, notice: str | None = None) -> StepResult:
    s.status = "queued"
    s.handoff_reason = reason
    s.priority = policy.priority[reason] + s.mood_boost
    s.queued_at = now
    s.awaiting = None
    s.queued_acked = False
    if notice is None:
        notice = policy.message("handoff_angry" if reason == "angry" else "handoff", s.locale)
        s.apologized = s.apologized or reason == "angry"
    return StepResult(s, (Reply(notice, sender="system"),), Handoff(reason, s.priority), action="handoff")


def _falling(policy: Policy, s: ConversationState) -> bool:
    w = policy.mood.trend_window
    scores = s.sentiment_scores
    return len(scores) >= w >= 2 and scores[-1] - scores[-w] <= -policy.mood.falling_by


def step(
    state: ConversationState,
    text: str,
    ann: Annotation,
    policy: Policy,
    now: float,
    shop=None,
    customer: str | None = None,
) -> StepResult:
    """One shopper message: the replies, the new state, and a hand-off if there is one.

    The order of decisions: an awaited order number; anger and a falling mood;
    a request for a person; order intents (looked up in ``shop``); a sure FAQ
    answer; a product question; the intent's own answer; a "did you mean";
    and only then "I did not understand". Without a ``shop`` the order intents
    answer from their templates and there is no FAQ or catalogue.
    """
    s = copy.deepcopy(state)
    s.turns += 1
    s.created_at = s.created_at or now
    s.updated_at = now
    if ann.language in ("en", "zh"):
        s.locale = ann.language
    # Out of scope (a class of the intent model) is never a confident intent.
    confident = ann.intent != OUT_OF_SCOPE and ann.intent_confidence >= policy.min_intent_confidence
    angry = ann.sentiment == "negative" and ann.sentiment_score <= policy.angry_sentiment_score
    s.remember(ann.intent if confident else None, ann.sentiment_score)
    s.angry = s.angry + 1 if angry else 0
    falling = _falling(policy, s)
    if "order_number" in s.slots and s.turns - s.order_turn > policy.orders.context_turns:
        s.slots.pop("order_number")  # the conversation has moved on from that order

    helped_pending, csat_pending = s.helped_pending, s.csat_pending
    s.helped_pending = s.csat_pending = False  # the buttons count only as the answer to the question
    if s.opened_at is None:
        s.opened_at = now  # a new episode
    if s.status == "queued":
        return _while_queued(policy, s, text, angry, falling)
    if s.status != "bot":
        return StepResult(s)  # an agent owns the conversation: the bot stays silent

    turn = _Turn(policy, s, text, ann, now, shop, customer)
    result = _bot_step(turn, confident, angry, falling, helped_pending, csat_pending)
    result.state.last_action = result.action
    return result


def _bot_step(
    turn: _Turn, confident: bool, angry: bool, falling: bool, helped_pending: bool, csat_pending: bool
) -> StepResult:
    s = turn.s
    if helped_pending and (pressed := _pressed(turn, "helped_quick_replies")) is not None:
        return _helped(turn, pressed == 0)
    if csat_pending and (pressed := _pressed(turn, "csat_quick_replies")) is not None:
        score = turn.qr("csat_quick_replies")[pressed]
        reply = Reply(turn.msg("csat_thanks"), kind="small_talk")
        return StepResult(s, (reply,), action="csat", events=((f"csat:{score}", ""),))
    return _ask_helped(turn, _with_mood(turn, _decide(turn, confident, angry, falling)))


def _pressed(turn: _Turn, name: str) -> int | None:
    """Which of the buttons ``name`` the message is (its text, as a button sends it), or None."""
    said = turn.text.strip().casefold()
    for i, label in enumerate(turn.qr(name)):
        if said == label.casefold():
            return i
    return None


# Answers built from the shop's data: what "Did that help?" asks about.
_DATA_ANSWERS = ("order:", "faq:", "products")


def _ask_helped(turn: _Turn, result: StepResult) -> StepResult:
    """After an answer from the shop's data, "Did that help?" with two buttons: once an episode, and only
    when the answer neither has buttons of its own (they would be replaced by these) nor asks for a detail."""
    s = turn.s
    data = result.action.startswith(_DATA_ANSWERS) and result.action != "products_none"
    if not data or result.handoff is not None or not result.replies:
        return result
    s.answered = result.action
    if s.helped_asked or not turn.policy.outcomes.ask_helped or result.replies[-1].quick_replies or s.awaiting:
        return result  # asked already; or the answer has buttons, or a question, of its own
    s.helped_asked = s.helped_pending = True
    ask = Reply(turn.msg("did_that_help"), quick_replies=turn.qr("helped_quick_replies"), kind="feedback")
    return replace(result, replies=(*result.replies, ask))


def _helped(turn: _Turn, yes: bool) -> StepResult:
    """The answer to "Did that help?": yes ends the episode as resolved by the bot; no offers a person."""
    s, rated = turn.s, turn.s.answered or ""
    if yes:
        reply = Reply(turn.msg("helped_yes"), kind="small_talk")
        s, outcome = close_episode(s, turn.now, "resolved_bot")
        return StepResult(s, (reply,), action="helped:yes", events=(("helped:yes", rated), outcome))
    s.answered = None  # not an answer that resolved anything: an idle end from here is abandoned
    reply = Reply(turn.msg("helped_no"), quick_replies=turn.qr("talk_to_person_quick_replies"), kind="fallback")
    return StepResult(s, (reply,), action="helped:no", events=(("helped:no", rated),))


def episode_end(state: ConversationState, policy: Policy, now: float) -> float:
    """When the state's episode ends if nothing more happens (0: none is open): ``outcomes.idle_s`` after the
    last change with the bot, ``agent_idle_s`` while a person has it."""
    if state.opened_at is None:
        return 0
    with_person = state.status in ("queued", "agent")
    return now + (policy.outcomes.agent_idle_s if with_person else policy.outcomes.idle_s)


def close_episode(
    state: ConversationState, now: float, outcome: str | None = None
) -> tuple[ConversationState, tuple[str, str]]:
    """End the current episode: the state for the next one, and the outcome event (outcome:KIND, why).

    Without ``outcome``, the episode ended by silence: resolved by the bot after an answer from the shop's
    data, handed off while a person had it, abandoned otherwise.
    """
    s = copy.deepcopy(state)
    if outcome is None:
        if s.status in ("queued", "agent"):
            outcome, detail = "handed_off", s.handoff_reason or ""
        elif s.answered:
            outcome, detail = "resolved_bot", "idle"
        else:
            outcome, detail = "abandoned", s.last_action or ""
    else:
        detail = "confirmed" if outcome == "resolved_bot" else s.handoff_reason or ""
    s.opened_at, s.answered = None, None
    s.helped_asked = s.helped_pending = False
    s.updated_at = max(s.updated_at, now)
    return s, (f"outcome:{outcome}", detail)


def _while_queued(policy: Policy, s: ConversationState, text: str, angry: bool, falling: bool) -> StepResult:
    """Waiting for a person: no answer to the content, but the first message (and "leave a message") is
    acknowledged. Anger or a falling mood while waiting moves the conversation up the queue."""
    handoff = None
    if angry and s.priority < policy.priority["angry"]:
        s.priority, s.handoff_reason = policy.priority["angry"], "angry"
        handoff = Handoff("angry", s.priority)
    elif falling and not s.mood_boost:
        s.mood_boost = 1
        s.priority += 1
        handoff = Handoff(s.handoff_reason or "mood", s.priority)
    leave = policy.quick_replies(s.locale, "agents_busy_quick_replies")[-1:]
    if text.strip() in leave:
        reply = policy.message("leave_message_ack", s.locale)
    elif not s.queued_acked:
        reply = policy.message("queued_ack", s.locale)
    else:
        return StepResult(s, (), handoff)
    s.queued_acked = True
    return StepResult(s, (Reply(reply, sender="system"),), handoff, action="queued_ack")


def _decide(turn: _Turn, confident: bool, angry: bool, falling: bool) -> StepResult:
    policy, s, text, ann, now = turn.policy, turn.s, turn.text, turn.ann, turn.now
    if s.awaiting:
        value = extract_slot(policy, s.awaiting["slot"], text)
        if value:
            s.slots[s.awaiting["slot"]] = value
            s.order_turn = s.turns
            intent = s.awaiting["intent"]
            if confident and ann.intent in policy.order_intents and not _bare(turn, value):
                intent = ann.intent  # "10024发货没" after "cancel": the number, with the request it comes with
            s.awaiting = None
            s.misunderstood = 0
            return _intent_answer(turn, intent)

    if (pressed := _order_button(turn)) is not None:
        s.misunderstood = 0
        return _with_slots(turn, pressed)

    if not angry and (talk := _small_talk(turn)) is not None:
        return talk
    if _says_nothing(turn):
        return _not_understood(turn)

    if angry and s.angry >= policy.angry_handoff_after and not _order_question(turn, confident):
        return _hand_off(policy, s, "angry", now)
    if angry and confident and ann.intent in policy.angry_handoff_intents and _says_lost(turn):
        return _hand_off(policy, s, "angry", now)  # "you idiots lost my parcel again": no answer finds it
    if falling and not s.mood_boost:
        s.mood_boost = 1
        if policy.mood.on_falling == "handoff":
            return _hand_off(policy, s, "mood", now)

    put_through = _puts_through(turn)
    product_words = _product_signal(turn)
    asks_products = not put_through and product_words == "strong" and not _names_person(turn)
    if ((confident and ann.intent in policy.handoff_intents) or put_through) and not asks_products:
        # ("请问有没有mug 想送同事", read as asking for a person, asks for products and names none.)
        if not put_through and _praise(turn):
            return _small_talk(turn, "thanks")  # "you've been super helpful, great bot": praise, no call for a person
        s.misunderstood = 0
        return _hand_off(policy, s, "requested", now)

    shop = turn.shop
    number = _order_number(turn)
    signal = product_words if shop is not None else None
    if number and signal and _is_price(turn, number):
        number = None  # "1000块以内": a price, not an order number

    if number and shop is not None and _bare(turn, number):
        # Only an order number ("10024", "my order is 10024"): show it and ask what to do with it.
        s.misunderstood = 0
        return _ask_order_action(turn, number)

    if signal == "strong" and not number and _current_order(turn) and (found := _products(turn, signal)) is not None:
        if found.action == "products":
            # "do you have headphones under 150?" after an order was shown: a product question, not the order's.
            s.misunderstood = 0
            return found

    if confident and ann.intent in policy.order_intents and ann.intent in policy.intents:
        s.misunderstood = 0
        no_order = not number and not _current_order(turn)
        if not number and (other := _other_entry(turn, ann.intent)) is not None:
            return other  # "my watch stopped working, is it under warranty?": not an order matter after all
        if (
            not number
            and not no_order
            and not _about_the_current_order(turn)
            and (general := _general_entry(turn, ann.intent)) is not None
        ):
            return general  # "will there be import tax when the package comes?" after an order: not that order's
        if shop is not None and no_order:
            # No order to look up: a question about products, or a general one the FAQ answers.
            if signal and (found := _products(turn, signal)) is not None:
                if found.action == "products" or price_bound(turn.policy, turn.text):
                    return found  # "那60块以下的机械键盘呢": a price bound is a product question, found or not
            if (general := _general_answer(turn, ann.intent)) is not None:
                return general
        return _with_slots(turn, ann.intent)

    if confident and (follow := policy.orders.follow_ups.get(ann.intent)) and (number or _current_order(turn)):
        # "Can I return it?" about the order just shown (or named in the message).
        s.misunderstood = 0
        if angry and not number and ann.intent in policy.angry_handoff_intents and not _complaint_topic(turn, ""):
            return _hand_off(policy, s, "angry", now)  # "垃圾客服,我要投诉!!!": fury that names nothing to look up
        if not number and (other := _other_entry(turn, ann.intent)) is not None:
            return other  # "is the speaker under warranty?" after an order: the FAQ is sure, and it is no return
        return _with_slots(turn, _complaint_topic(turn, follow), follow_up=True)
    if not number and _current_order(turn) and _money_missing(turn):
        s.misunderstood = 0  # "可是钱还没到账啊" after a refunded order was shown: its refund (a dispute if sent)
        return _with_slots(turn, "track_refund", follow_up=True)
    carrier = policy.orders.carrier_question.get(turn.lang)
    if not number and _current_order(turn) and carrier is not None and carrier.search(text[:300]):
        s.misunderstood = 0  # "fine. which carrier has it?" about the order shown: its status names the carrier
        return _with_slots(turn, "track_order", follow_up=True)
    if not number and _current_order(turn) and turn.near and turn.near[0].score >= policy.faq.suggest_score:
        follow = policy.orders.faq_follow_ups.get(turn.near[0].entry.id)
        if follow and (not confident or _disagree(turn, ann.intent)):
            # An unsure message closest to an order question (or one whose intent the knowledge base does not
            # back: "can I return it?" read as delivery options): about the current order.
            s.misunderstood = 0
            return _with_slots(turn, follow, follow_up=True)
    where = ann.intent in ("track_order", "delivery_period") and ann.intent_confidence >= policy.orders.unsure_where
    if not number and not confident and where and _current_order(turn) and shop is not None:
        s.misunderstood = 0  # "ugh ok. when will it arrive" after an order was shown: most likely where it is
        return _with_slots(turn, ann.intent, follow_up=True)
    if number and shop is not None and not (confident and ann.intent in policy.intents):
        s.misunderstood = 0
        if (
            ann.intent in ("track_order", "delivery_period", "complaint")
            and ann.intent_confidence >= policy.orders.unsure_where
        ):
            # Unsure, but most likely "where is it" (or a grievance about it): where it is.
            return _with_slots(turn, "delivery_period" if ann.intent == "delivery_period" else _complaint_topic(turn))
        # An order number without a clear request: show the order and ask what to do with it.
        return _ask_order_action(turn, number)

    faq = turn.faq  # the message is embedded here, not before: an order with its number needs no FAQ
    if faq is not None and faq.action == "answer" and not _own_answer(turn):
        s.misunderstood = 0
        entry = faq.hits[0].entry
        follow = policy.orders.faq_follow_ups.get(entry.id)
        if follow and _current_order(turn):
            return _with_slots(turn, follow, follow_up=True)
        ip = policy.intents.get(ann.intent)
        qr = ip.quick_replies.get(turn.lang, ()) if confident and ip and entry.id in ip.faq else ()
        return _with_other_parts(turn, _faq_answer(turn, entry, qr), entry.id)

    current = _current_order(turn)
    unsure_order = ann.intent in policy.order_intents and ann.intent_confidence >= policy.orders.unsure_where
    if not number and not confident and unsure_order and current and shop is not None and not signal:
        # An unsure order request about the order in the conversation ("I want to change the colour of the
        # speaker" after 10028 was shown): what to do with that order, with buttons, not FAQ entries.
        s.misunderstood = 0
        return _ask_order_action(turn, current)

    if signal and not number and (found := _products(turn, signal)) is not None:
        # Nothing found: "not found" unless the intent model is sure the message is something else, or the
        # knowledge base is sure of a part of it ("有没有gift card啊 想送闺蜜": gift cards are no product).
        other = (
            ann.intent not in ("place_order", OUT_OF_SCOPE, *policy.handoff_intents) and ann.intent_confidence >= 0.9
        )
        if found.action == "products" or (signal == "strong" and not other and not _about_the_shop(turn)):
            s.misunderstood = 0
            if found.action != "products" and (several := _clause_answers(turn)) is not None:
                return several
            return found

    if confident and ann.intent == "place_order" and shop is not None:
        if (related := _related_answer(turn, ann.intent, policy.faq.answer_score)) is not None:
            return related  # "can I buy a gift card?": the FAQ entry, before a product search
        if (found := _products(turn, "weak")) is not None and found.action == "products":
            s.misunderstood = 0
            return found  # "I'd like to buy building blocks for my son": what the shop has

    if confident and ann.intent in policy.intents:
        s.misunderstood = 0
        if angry and ann.intent in policy.angry_handoff_intents:
            if (related := _related_answer(turn, ann.intent, policy.faq.suggest_score)) is not None:
                return related
            if shop is not None and (topic := _complaint_topic(turn, "")):
                # "waited two weeks and still nothing!!": its words name an order matter; the number first.
                return _with_slots(turn, topic)
            # Furious, and nothing to look up or answer but "tell me what happened": a person, now.
            return _hand_off(policy, s, "angry", now)
        if ann.intent == "review" and _positive(turn):
            return _small_talk(turn, "thanks") or _with_slots(turn, ann.intent)
        if ann.intent != "place_order" or not _in_person(turn):
            return _with_slots(turn, ann.intent)
        # "is there a shop in London where I can see things?": no question of how to order online.

    if _positive(turn) and not number and (talk := _small_talk(turn, "thanks")) is not None:
        return talk  # praise in words the patterns do not know: thanks, and "anything else?"

    sure_out_of_scope = (
        ann.intent == OUT_OF_SCOPE
        and ann.intent_confidence >= policy.min_intent_confidence
        and not _about_the_shop(turn)
    )
    if (several := _clause_answers(turn)) is not None:
        return several  # "how much is shipping to the UK, do you take PayPal, and how long does it take?"
    if faq is not None and faq.action == "clarify" and not sure_out_of_scope:
        return _did_you_mean(turn, faq.hits)

    if sure_out_of_scope and policy.out_of_scope:
        # Sure that no shop business is asked: say what the bot can do instead of "did you mean". The
        # message was understood (a poem, the weather), so it is no step towards the not-understood hand-off.
        reply = Reply(policy.out_of_scope[turn.lang], quick_replies=turn.qr(), kind="fallback")
        return StepResult(s, (reply,), action="out_of_scope")
    return _not_understood(turn)


def _clause_answers(turn: _Turn) -> StepResult | None:
    """A message of several parts that the knowledge base does not answer as a whole: the FAQ's answer to
    each part it is sure of (up to three entries, in the message's order), or None."""
    entries = turn.clause_entries
    if not entries:
        return None
    answers = [_faq_answer(turn, e) for e in entries[:3]]
    turn.s.misunderstood = 0
    return StepResult(turn.s, tuple(r for a in answers for r in a.replies), action=answers[0].action)


def _with_other_parts(turn: _Turn, result: StepResult, answered: str) -> StepResult:
    """An FAQ answer to the whole message, and the answers to its other parts the knowledge base is sure of
    ("how much is express delivery, and do you take WeChat Pay?"): up to three entries in all."""
    others = [e for e in turn.clause_entries if e.id != answered][:2]
    if not others:
        return result
    more = tuple(r for e in others for r in _faq_answer(turn, e).replies)
    return replace(result, replies=(*result.replies, *more))


def _not_understood(turn: _Turn) -> StepResult:
    """ "Sorry, I didn't get that", with the offer of a person; the second time in a row, a person."""
    s, policy = turn.s, turn.policy
    s.misunderstood += 1
    if s.misunderstood >= policy.misunderstood_handoff_after:
        return _hand_off(policy, s, "not_understood", turn.now)
    name = "not_understood_offer_agent" if s.misunderstood > 1 or turn.shop is not None else "not_understood"
    # The closest entries, however far: an LLM (if configured) may find the answer in them, or say it cannot.
    facts = _faq_facts(turn, [h.entry for h in turn.near])
    reply = Reply(turn.msg(name), quick_replies=turn.qr(), facts=facts, kind="fallback")
    return StepResult(s, (reply,), action="not_understood")


_VOWELS = set("aeiouy")
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _mash(word: str) -> bool:
    """A Latin 'word' no language has: three or more letters and no vowel ("zzzxxx"), six or more off one
    row of the keyboard with three consonants in a row ("asdkjh"; "pottery" and "typewriter" are words), or
    three or more keys side by side on one row ("qwe", "asdf", "lkj")."""
    w = word.lower()
    if not w.isascii() or not w.isalpha():
        return False
    run = max((len(r) for r in re.split("[aeiouy]+", w)), default=0)
    one_row = len(w) >= 6 and run >= 3 and any(set(w) <= set(row) for row in _KEY_ROWS)
    side_by_side = len(w) >= 3 and any(w in row or w in row[::-1] for row in _KEY_ROWS)
    return (len(w) >= 3 and not (set(w) & _VOWELS)) or one_row or side_by_side


def _says_nothing(turn: _Turn) -> bool:
    """The message is only words that ask nothing (policy.fillers, in either language), punctuation and
    keyboard mashes: no request for any model to find."""
    fillers = turn.policy.fillers
    text = turn.text[:300].lower()
    if not fillers or any(c.isdigit() for c in text):
        return False
    for pattern in fillers.values():
        text = pattern.sub(" ", text)
    return all(_mash(w) for w in re.findall(r"\w+", text))


def _bare(turn: _Turn, number: str) -> bool:
    """The message is the order number and words that ask nothing (orders.bare)."""
    bare = turn.policy.orders.bare
    pattern = bare.get(turn.lang)
    if pattern is None:
        return False
    rest = turn.text[:200].upper().replace(number, " ").lower()
    if pattern.search(rest.strip()):
        return True
    # Both languages in one message ("sorry打错了 10022"): its Latin words bare in English, the rest in Chinese.
    latin = re.findall(r"[a-z][a-z' ]*", rest)
    en, zh = bare.get("en"), bare.get("zh")
    if not latin or en is None or zh is None:
        return False
    return all(en.search(w.strip()) for w in latin) and bool(zh.search(re.sub(r"[a-z][a-z' ]*", " ", rest).strip()))


def _is_price(turn: _Turn, number: str) -> bool:
    q = parse_query(turn.text[:300], {})
    return any(b is not None and str(b) == number.lstrip("0") for b in (q.min_price, q.max_price))


def _related_answer(turn: _Turn, intent: str, min_score: float) -> StepResult | None:
    """The knowledge base's best entry, where it is one the intent lists (related_faq) and scores min_score."""
    related = turn.policy.intents[intent].related_faq
    if not related or not turn.near or turn.near[0].entry.id not in related or turn.near[0].score < min_score:
        return None
    turn.s.misunderstood = 0
    return _faq_answer(turn, turn.near[0].entry)


def _general_answer(turn: _Turn, intent: str) -> StepResult | None:
    """An order question without an order and not about the shopper's own ("how long does delivery take?",
    "how do I send something back?"): the FAQ's answer where the knowledge base is sure or agrees with the
    intent (related_faq), and an offer to check an order."""
    personal = turn.policy.orders.personal.get(turn.lang)
    how = turn.policy.orders.how.get(turn.lang)
    if personal is not None and personal.search(turn.text) and not (how is not None and how.search(turn.text)):
        sure = turn.policy.orders.personal_sure
        if sure is None or turn.ann.intent_confidence >= sure or turn.faq is None or turn.faq.action != "answer":
            return None  # "I want to cancel my order": the order number is what is needed (but not "how do I ...")
    result = None
    if turn.faq is not None and turn.faq.action == "answer":
        result = _faq_answer(turn, turn.faq.hits[0].entry)
    else:
        result = _related_answer(turn, intent, turn.policy.faq.suggest_score)
    if result is None:
        return None
    turn.s.awaiting = {"intent": intent, "slot": "order_number"}
    follow = Reply(turn.msg("ask_order_number_after_faq"), quick_replies=_known_orders(turn))
    return replace(result, replies=(*result.replies, follow))


def _other_entry(turn: _Turn, intent: str) -> StepResult | None:
    """The FAQ's answer when the knowledge base is sure of an entry the order intent does not list: the
    intent model took a general question for an order request ("is my watch still under warranty?",
    "it's cheaper now, can I get the difference back?"); asking for an order number would not help.
    With an order in the conversation, an entry that is a question about it (orders.faq_follow_ups) is
    asked of that order."""
    ip = turn.policy.intents[intent]
    faq = turn.faq  # None without a shop
    if faq is None or faq.action != "answer" or faq.hits[0].entry.id in (*ip.faq, *ip.related_faq):
        return None
    if _about_the_current_order(turn):
        return None  # "我要退款" after an order was shown: that order's refund, not how refunds are paid
    follow = turn.policy.orders.faq_follow_ups.get(faq.hits[0].entry.id)
    if follow and _current_order(turn):
        return _with_slots(turn, follow, follow_up=True)
    return _faq_answer(turn, faq.hits[0].entry)


def _money_missing(turn: _Turn) -> bool:
    """The message says money due has not come (orders.refund_missing with the words of money,
    orders.complaint_topics.track_refund): "I never got my money back", "钱还没到账"."""
    op = turn.policy.orders
    missing, money = op.refund_missing.get(turn.lang), op.complaint_topics.get("track_refund", {}).get(turn.lang)
    text = turn.text[:300]
    return missing is not None and money is not None and bool(missing.search(text) and money.search(text))


def _about_the_current_order(turn: _Turn) -> bool:
    """A near-certain order intent in personal words, with an order in the conversation (orders.order_sure)."""
    op = turn.policy.orders
    personal = op.personal.get(turn.lang)
    return (
        op.order_sure is not None
        and turn.ann.intent_confidence >= op.order_sure
        and _current_order(turn) is not None
        and personal is not None
        and bool(personal.search(turn.text))
    )


def _general_entry(turn: _Turn, intent: str) -> StepResult | None:
    """With an order in the conversation, the FAQ's answer to a general question that the order intent lists
    among its related entries (the knowledge base ranks it first and clear of the runner-up) but that asks
    nothing of an order (not in orders.faq_follow_ups): customs or express asked beside delivery timing."""
    near, fp = turn.near, turn.policy.faq
    if not near or near[0].entry.id in turn.policy.orders.faq_follow_ups:
        return None
    if len(near) > 1 and near[0].score - near[1].score < fp.agree_lead:
        return None
    return _related_answer(turn, intent, fp.suggest_score)


def _positive(turn: _Turn) -> bool:
    return turn.ann.sentiment == "positive" and turn.ann.sentiment_score >= turn.policy.mood.positive_score


def _praise(turn: _Turn) -> bool:
    """A positive message that names no person (handoff.person): praise of the bot or the shop, which the
    intent model may read as asking for a person ("great bot, thanks")."""
    return _positive(turn) and turn.policy.handoff_person.get(turn.lang) is not None and not _names_person(turn)


def _names_person(turn: _Turn) -> bool:
    """The message names a person to talk to (handoff.person: "agent", "human", "人工", "客服")."""
    person = turn.policy.handoff_person.get(turn.lang)
    return person is not None and bool(person.search(turn.text[:300]))


def _puts_through(turn: _Turn) -> bool:
    """ "connect me to customer service": read as asking how to contact the shop, but asking for a person
    (the words say so, however unsure the intent model is between asking how and asking for)."""
    p = turn.policy
    words = p.put_through.get(turn.lang)
    return turn.ann.intent in p.put_through_intents and words is not None and bool(words.search(turn.text[:300]))


def _says_lost(turn: _Turn) -> bool:
    """The message says a parcel is lost (orders.lost) and names no order to look up."""
    words = turn.policy.orders.lost.get(turn.lang)
    return words is not None and bool(words.search(turn.text[:300])) and not _order_number(turn)


def _order_number(turn: _Turn) -> str | None:
    """The order number the message names, if the policies know how one looks."""
    p = turn.policy
    return extract_slot(p, "order_number", turn.text) if "order_number" in p.slot_patterns else None


def _order_question(turn: _Turn, confident: bool) -> bool:
    """A clear question about an order the shop's data answers ("so when is it supposed to get here?" about
    the order just shown): angry or not, the shopper gets the answer rather than a wait for a person."""
    p = turn.policy
    if turn.shop is None or not confident or turn.ann.intent not in p.order_intents:
        return False
    return bool(_current_order(turn) or _order_number(turn))


def _current_order(turn: _Turn) -> str | None:
    """The order the conversation is about: the last one given or shown, within orders.context_turns."""
    return turn.s.slots.get("order_number")


def _order_button(turn: _Turn) -> str | None:
    """The order intent of a pressed order button ("Cancel this order"), in either language."""
    label = turn.text.strip()
    for buttons in turn.policy.orders.actions.values():
        if label in buttons:
            return buttons[label]
    return None


def _look_up(turn: _Turn, number: str, intent: str | None = None):
    """The order and whether the writer owns it (True, or None where the channel cannot say); or the
    reply when there is none to show. With ``intent``, a wrong number keeps that request for the next one."""
    try:
        order = turn.shop.order(number)  # type: ignore[union-attr]
    except OrderSourceError:
        text = turn.msg("order_source_down")
        reply = Reply(text, quick_replies=turn.qr("talk_to_person_quick_replies"))
        return StepResult(turn.s, (reply,), action="order_source_down")
    owner = order.belongs_to(turn.customer) if order is not None else None
    if order is None or owner is False:
        # Someone else's order reads as no order at all: order numbers are not to be probed.
        turn.s.slots.pop("order_number", None)
        if intent is not None:
            turn.s.awaiting = {"intent": intent, "slot": "order_number"}  # the right number may follow
        reply = Reply(turn.msg("order_not_found", order_number=number))
        return StepResult(turn.s, (reply,), action="order_not_found")
    return order, owner


def _ask_order_action(turn: _Turn, number: str) -> StepResult:
    """An order number and no clear request: the order's status, and buttons for what to do with it."""
    found = _look_up(turn, number)
    if isinstance(found, StepResult):
        return found
    order, owner = found
    turn.s.slots["order_number"] = order.order_number
    turn.s.order_turn = turn.s.turns
    status = answers.status_text(turn.policy, turn.lang, order, owner is True, turn.faq_texts())
    ask = turn.msg("ask_order_action", order_number=order.order_number)
    sep = "" if turn.lang == "zh" else " "
    buttons = tuple(turn.policy.orders.actions.get(turn.lang, {}))
    facts = answers.order_facts(order, owner is True)
    reply = Reply(f"{status}{sep}{ask}", quick_replies=buttons, facts=facts, kind="order")
    return StepResult(turn.s, (reply,), action="ask_order_action")


def _small_talk(turn: _Turn, only: str | None = None) -> StepResult | None:
    """A greeting or thanks alone gets a greeting or "you're welcome, anything else?" (policies.small_talk).

    With ``only``: that reply whatever the words (praise the patterns do not know, read as positive).
    """
    for name, talk in turn.policy.small_talk.items():
        if name == only or (only is None and talk.pattern[turn.lang].search(turn.text.strip())):
            turn.s.misunderstood = 0
            turn.s.apologized = False
            reply = Reply(talk.reply[turn.lang], kind="small_talk")
            return StepResult(turn.s, (reply,), action=f"small_talk:{name}")
    return None


def _faq_facts(turn: _Turn, entries) -> tuple[str, ...]:
    """FAQ entries as facts for the LLM: question and answer, in the shopper's language where written."""
    return tuple(f"{e.question_in(turn.lang)} {e.answer_in(turn.lang)[0]}" for e in entries)


def _complaint_topic(turn: _Turn, default: str = "track_order") -> str:
    """The order question a complaint is about, by its words (orders.complaint_topics); else ``default``."""
    if turn.ann.intent != "complaint":
        return default
    for intent, words in turn.policy.orders.complaint_topics.items():
        pattern = words.get(turn.lang)
        if pattern is not None and pattern.search(turn.text):
            return intent
    return default


def _with_slots(turn: _Turn, intent: str, follow_up: bool = False) -> StepResult:
    """Fill the intent's slots from the message (or earlier ones), ask for the first one missing, then answer."""
    s = turn.s
    for slot in turn.policy.intents[intent].needs:
        value = extract_slot(turn.policy, slot, turn.text)
        if value:
            s.slots[slot] = value
            if slot == "order_number":
                s.order_turn = s.turns
        elif slot not in s.slots:
            s.awaiting = {"intent": intent, "slot": slot}
            reply = Reply(turn.msg(f"ask_{slot}"), quick_replies=_known_orders(turn))
            return StepResult(s, (reply,), action=f"ask:{slot}")
    return _intent_answer(turn, intent, follow_up)


def _known_orders(turn: _Turn) -> tuple[str, ...]:
    """The shopper's own recent order numbers, as quick replies, where the channel says who they are."""
    if turn.shop is None or not turn.customer:
        return ()
    try:
        return tuple(o.order_number for o in turn.shop.recent_orders(turn.customer, 3))
    except Exception:  # noqa: BLE001 - a suggestion only: the question stands without it
        return ()


def _intent_answer(turn: _Turn, intent: str, follow_up: bool = False) -> StepResult:
    if turn.shop is not None and intent in turn.policy.order_intents and "order_number" in turn.s.slots:
        return _order(turn, intent, turn.s.slots["order_number"], follow_up)
    ip = turn.policy.intents[intent]
    if turn.shop is not None and (ip.faq or ip.related_faq):
        # The shop's own facts, not a second copy of them in the policies file: of the intent's
        # entries, the one the knowledge base ranks best for the message.
        qr = ip.quick_replies.get(turn.lang, ())
        family = (*ip.faq, *ip.related_faq)
        near, suggest = turn.near, turn.policy.faq.suggest_score
        lead = near[0].score - near[1].score if len(near) > 1 else 1.0
        if near and near[0].entry.id in family and near[0].score >= suggest and lead >= turn.policy.faq.agree_lead:
            return _faq_answer(turn, near[0].entry, qr)  # the intent and the knowledge base agree
        ranked = [h for h in near[:3] if h.entry.id in family]
        if ip.faq and ranked and near[0].score >= suggest:
            # They disagree on the entry, or agree with a close runner-up: ask rather than answer the wrong one.
            return _did_you_mean(turn, [near[0], ranked[0]] if ranked[0] is not near[0] else near[:2])
        if ip.faq and turn.faq is not None and turn.faq.action == "clarify":
            # The intent and the knowledge base disagree: ask rather than answer the wrong entry.
            return _did_you_mean(turn, turn.faq.hits, _faq_entry(turn, ip.faq[0]))
        if len(ip.faq) == 1 and (entry := _faq_entry(turn, ip.faq[0])) is not None and _backed(turn, entry):
            return _faq_answer(turn, entry, qr)  # the intent has one entry: that one
        if ip.faq and (entries := [e for i in ip.faq[:3] if (e := _faq_entry(turn, i)) is not None]):
            # Several entries and no sign which: offer the usual ones.
            return _did_you_mean(turn, [], *entries)
    return _answer(turn.policy, turn.s, intent)


def _about_the_shop(turn: _Turn) -> bool:
    """The message asks about the shop itself (its app, a store in a city): shop business, whatever the
    intent model reads (policy.about_the_shop)."""
    return any(p.search(turn.text) for p in turn.policy.about_the_shop.values())


def _own_answer(turn: _Turn) -> bool:
    """The intent model is sure of an intent that lists no FAQ entry and answers by itself ("how do I
    change the e-mail on my account?" is no question of how to create one, however alike they look)."""
    floor = turn.policy.faq.own_answer_confidence
    ip = turn.policy.intents.get(turn.ann.intent)
    return (
        floor is not None
        and ip is not None
        and turn.ann.intent_confidence >= max(floor, turn.policy.min_intent_confidence)
        and turn.ann.intent not in turn.policy.order_intents
        and turn.ann.intent not in turn.policy.handoff_intents
        and not ip.faq
        and not ip.related_faq
    )


def _in_person(turn: _Turn) -> bool:
    """The message asks about going to a shop in person (policy.in_person)."""
    return any(p.search(turn.text) for p in turn.policy.in_person.values())


def _disagree(turn: _Turn, intent: str) -> bool:
    """The intent has FAQ entries and the knowledge base ranks none of them among its three best."""
    ip = turn.policy.intents.get(intent)
    family = (*ip.faq, *ip.related_faq) if ip is not None else ()
    return bool(family) and not any(h.entry.id in family for h in turn.near[:3])


def _backed(turn: _Turn, entry) -> bool:
    """The knowledge base has ``entry`` among its three best for the message: an intent's only entry answers
    only then ("how much are these earbuds on Amazon?", read as a cancellation fee question, does not get
    the cancellation entry)."""
    return any(h.entry.id == entry.id for h in turn.near[:3])


def _did_you_mean(turn: _Turn, hits, *also) -> StepResult:
    if (several := _clause_answers(turn)) is not None:
        return several  # a long message with its question in one part: that part's sure answer
    if _in_person(turn):
        return _not_understood(turn)  # "a physical store in Melbourne?": no FAQ entry near it helps; a person may
    entries = [h.entry for h in hits] + [e for e in also if e is not None]
    options = tuple(dict.fromkeys(e.question_in(turn.lang) for e in entries))
    facts = _faq_facts(turn, entries)
    turn.s.misunderstood = 0
    reply = Reply(turn.msg("faq_did_you_mean"), quick_replies=options, facts=facts, kind="fallback")
    return StepResult(turn.s, (reply,), action="did_you_mean")


def _faq_entry(turn: _Turn, entry_id: str):
    turn.shop.refresh()  # type: ignore[union-attr]
    kb = getattr(turn.shop, "kb", None)
    return next((e for e in getattr(kb, "entries", ()) if e.id == entry_id), None)


def _order(turn: _Turn, intent: str, number: str, follow_up: bool = False) -> StepResult:
    """Look the order up and answer from its real status; hand off when the action needs a person."""
    found = _look_up(turn, number, intent)
    if isinstance(found, StepResult):
        return found
    order, owner = found
    turn.s.order_turn = turn.s.turns
    if follow_up and intent == "get_refund" and order.status in answers.CLOSED:
        intent = "track_refund"  # "can I get my money back?" about a closed order: where its refund is
    if intent == "cancel_order" and (asked := turn.policy.orders.cancelled_question.get(turn.lang)) is not None:
        if asked.search(turn.text):
            intent = "track_order"  # "has my order been cancelled?" asks its status; it asks for no cancellation
    if intent == "cancel_order" and order.status == "delivered":
        words = turn.policy.orders.return_words.get(turn.lang)
        if words is not None and words.search(turn.text):
            intent = "get_refund"  # "有点杂音 我想退了" about a delivered order: a return, nothing to cancel
    negative = turn.ann.sentiment == "negative" and turn.ann.sentiment_score <= turn.policy.mood.negative_score
    angry = turn.ann.sentiment == "negative" and turn.ann.sentiment_score <= turn.policy.angry_sentiment_score
    missing = turn.policy.orders.refund_missing.get(turn.lang)
    ans = answers.for_order(
        turn.policy, turn.lang, intent, order, verified=owner is True, negative=negative, faq=turn.faq_texts(),
        says_missing=missing is not None and bool(missing.search(turn.text)), angry=angry,
    )  # fmt: skip
    if not ans.quick_replies:
        ans = replace(ans, quick_replies=turn.policy.intents[intent].quick_replies.get(turn.lang, ()))
    return _from_answer(turn, ans, f"order:{intent}")


def _product_signal(turn: _Turn) -> str | None:
    return product_signal(turn.policy, turn.text)


def _in_catalogue_currency(turn: _Turn, query: ProductQuery) -> tuple[ProductQuery, str]:
    """Price bounds asked in another currency (300块), converted at products.exchange_rates; and a note saying so."""
    shop, pp = turn.shop, turn.policy.products
    shop.refresh()  # type: ignore[union-attr]
    ours = shop.catalog.currency  # type: ignore[union-attr]
    if not ours or query.currency in (None, ours) or (query.min_price is None and query.max_price is None):
        return query, ""
    rate = pp.exchange_rates.get(query.currency)  # type: ignore[union-attr, arg-type]
    if not rate:
        return query, turn.msg("price_in_currency", currency=ours)

    def conv(v: Decimal | None) -> Decimal | None:
        return None if v is None else (v / Decimal(str(rate))).quantize(Decimal("0.01"))

    asked = query.max_price if query.max_price is not None else query.min_price
    note = turn.msg("price_converted", amount=asked, asked=query.currency, converted=conv(asked), currency=ours)
    return replace(query, min_price=conv(query.min_price), max_price=conv(query.max_price), currency=ours), note


def _products(turn: _Turn, signal: str | None) -> StepResult | None:
    """A product question ("do you have ...", "推荐 ..."): matches from the catalogue, or None if it is not one."""
    return None if signal is None else turn.catalogue


def _search_products(turn: _Turn) -> StepResult | None:
    pp = turn.policy.products
    if pp is None:
        return None
    query, note = _in_catalogue_currency(turn, parse_query(turn.text, pp.categories, pp.filler[turn.lang]))
    shop = turn.shop
    vec = turn.vector(query.subject) if query.subject else None
    # A category and nothing more specific ("sports stuff"): that category's products. Words beside it that
    # the catalogue does not use ("pls", "for my nephew") narrow nothing, unless the FAQ comes close to the
    # message: then they may be its question ("measurements in inches for the clothes?": sizes).
    rest = _beside_category(turn, query)
    by_category = query.category is not None and not (rest and shop.catalog.mentions(rest))  # type: ignore[union-attr]
    if by_category and rest and turn.near and turn.near[0].score >= turn.policy.faq.suggest_score:
        by_category = False
    hits = shop.products(query, vec, pp.min_lead, pp.spread, pp.max_results, by_category)  # type: ignore[union-attr]
    if not hits and not by_category and query.category is not None:
        # The category word was part of what is asked for ("fitness watch", "运动手表": the watch is
        # electronics): the subject, in any category.
        query = replace(query, category=None)
        hits = shop.products(query, vec, pp.min_lead, pp.spread, pp.max_results, False)  # type: ignore[union-attr]
    nearest = [] if hits or by_category else shop.catalog.nearest(query, vec, pp.min_lead)  # type: ignore[union-attr]
    suggestions = []
    if turn.customer:
        try:
            bought_like = shop.suggestions(turn.customer)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a suggestion only
            bought_like = []
        shown = {h.product.sku for h in hits}
        suggestions = [p for p in bought_like if p.sku not in shown]
    ans = answers.for_products(turn.policy, turn.lang, query, hits, suggestions, nearest, note)
    return _from_answer(turn, ans, "products" if hits else "products_none")


def _beside_category(turn: _Turn, query: ProductQuery) -> str:
    """The subject without the category's words and words that name no product ("stuff", "for my son"):
    "手表" of "运动手表", "pls" of "sports gear below $30 pls"; empty when the category is all it names."""
    pp = turn.policy.products
    rest = query.subject.lower()
    for w in pp.categories.get(query.category or "", ()):  # type: ignore[union-attr]
        rest = rest.replace(w.lower(), " ")
    generic = pp.generic.get(turn.lang)  # type: ignore[union-attr]
    if generic is not None:
        rest = generic.sub(" ", rest)
    return rest.strip()


def _from_answer(turn: _Turn, ans: answers.Answer, action: str) -> StepResult:
    reply = Reply(ans.text, quick_replies=ans.quick_replies, facts=ans.facts, kind=ans.kind)
    if ans.handoff:
        result = _hand_off(turn.policy, turn.s, ans.handoff, turn.now, notice=ans.text)
        replies = (replace(result.replies[0], facts=ans.facts, kind=ans.kind),)
        return replace(result, replies=replies, action=action)
    return StepResult(turn.s, (reply,), action=action)


def _faq_answer(turn: _Turn, entry, quick_replies: tuple[str, ...] = ()) -> StepResult:
    answer, used = entry.answer_in(turn.lang)
    text = answer if used == turn.lang else f"{turn.msg('faq_other_language')} {answer}"
    reply = Reply(text, quick_replies=quick_replies, facts=(entry.question_in(used), answer), kind="faq")
    return StepResult(turn.s, (reply,), action=f"faq:{entry.id}")


def _with_mood(turn: _Turn, result: StepResult) -> StepResult:
    """An apology before the answer to a negative message, thanks before the answer to a positive one."""
    mood, ann = turn.policy.mood, turn.ann
    if not result.replies or (result.handoff is not None and result.handoff.reason == "angry"):
        return result
    if result.replies[0].kind == "small_talk":
        return result  # already an answer to the mood: no "thanks!" before "you're welcome"
    negative = ann.sentiment == "negative" and ann.sentiment_score <= mood.negative_score
    if not negative:
        turn.s.apologized = False  # the grievance is over: a new one gets its own apology
    if negative and turn.s.apologized:
        return result  # one apology per grievance, not one per message
    asked_for_person = result.handoff is not None and result.handoff.reason == "requested"
    if (
        negative
        and (result.action.startswith("products") or asked_for_person)
        and ann.sentiment_score > turn.policy.angry_sentiment_score
    ):
        # A product question is no grievance: the "negative" of "那200元以内的玩具呢" is the model's
        # misreading of a follow-up question; nor is asking for a person ("can I talk to an actual human
        # being please"). Only an angry one gets an apology first.
        return result
    if negative:
        prefix = turn.msg("apology")
        turn.s.apologized = True
    elif ann.sentiment == "positive" and ann.sentiment_score >= mood.positive_score and ann.intent != "review":
        prefix = turn.msg("thanks")
    else:
        return result
    first = result.replies[0]
    sep = "" if turn.lang == "zh" else " "
    replies = (replace(first, text=f"{prefix}{sep}{first.text}"), *result.replies[1:])
    return replace(result, replies=replies)


def agent_claimed(state: ConversationState, agent: str, policy: Policy, now: float) -> tuple[ConversationState, Reply]:
    s = copy.deepcopy(state)
    s.status, s.agent, s.updated_at = "agent", agent, now
    return s, Reply(policy.message("agent_joined", s.locale), sender="system")


def agents_busy(state: ConversationState, policy: Policy, now: float) -> tuple[ConversationState, Reply]:
    """Nobody claimed the conversation in time: offer to keep waiting or to leave a message (once)."""
    s = copy.deepcopy(state)
    s.busy_notice_at, s.updated_at = now, now
    text = policy.message("agents_busy", s.locale)
    return s, Reply(text, sender="system", quick_replies=policy.quick_replies(s.locale, "agents_busy_quick_replies"))


def resolved(state: ConversationState, policy: Policy, now: float) -> tuple[ConversationState, Reply, tuple[str, str]]:
    """An agent marked the conversation resolved: back to the bot, the episode's outcome (resolved by an
    agent; why: the hand-off's reason), and the offer to rate the help (outcomes.ask_csat)."""
    s, outcome = close_episode(state, now, "resolved_agent")
    agent = s.agent
    s.status, s.agent, s.handoff_reason, s.priority, s.queued_at = "bot", None, None, 0, None
    s.busy_notice_at = None
    s.misunderstood = s.angry = s.mood_boost = 0
    s.queued_acked = s.apologized = False
    s.updated_at = now
    text, buttons = policy.message("back_to_bot", s.locale), ()
    if agent and policy.outcomes.ask_csat:
        s.csat_pending = True  # until the rating, or the next message
        sep = "" if s.locale == "zh" else " "
        text = f"{text}{sep}{policy.message('csat_question', s.locale)}"
        buttons = policy.quick_replies(s.locale, "csat_quick_replies")
    return s, Reply(text, sender="system", quick_replies=buttons), outcome
