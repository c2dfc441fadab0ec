"""Dialogue policies from a YAML file the shop can edit (see ``policies.yaml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .shop_data import ORDER_STATUSES

DEFAULT_FILE = Path(__file__).with_name("policies.yaml")
LANGUAGES = ("en", "zh")


class FaqTexts(dict):
    """FAQ answers by entry id, in one language, for texts that quote them (``{faq[return-policy]}``).

    An entry the shop does not have reads as nothing, so the rest of the text still stands
    (``python -m dialogue.facts`` reports the missing entry).
    """

    def __missing__(self, key: str) -> str:
        return ""


class PolicyError(ValueError):
    """The policies file is missing, unreadable or incomplete; the message says where."""


@dataclass(frozen=True)
class IntentPolicy:
    texts: dict[str, str]
    needs: tuple[str, ...] = ()
    quick_replies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The FAQ entries that answer this intent with the shop's own facts, the usual one first:
    # the one the knowledge base ranks best for the message is answered (the texts are the
    # fallback when the shop has none of them, and state no facts of their own).
    faq: tuple[str, ...] = ()
    # Entries answered only when the knowledge base ranks one among its closest to the message
    # (else the intent's own text; for an order intent without an order number, the question).
    related_faq: tuple[str, ...] = ()


@dataclass(frozen=True)
class MoodPolicy:
    negative_score: float = -0.3
    positive_score: float = 0.5
    trend_window: int = 3
    falling_by: float = 0.8
    on_falling: str = "raise_priority"  # raise_priority | handoff


@dataclass(frozen=True)
class OutcomePolicy:
    # An episode with the bot that saw no message for this long ends: resolved by the bot when its last
    # answer came from the shop's data (and was not called unhelpful), else abandoned.
    idle_s: float = 900.0
    # ... and one with a person (queued, or claimed) that nobody marked resolved: handed off.
    agent_idle_s: float = 86400.0
    # Ask "Did that help?" (once per episode) after an answer from the shop's data.
    ask_helped: bool = True
    # Ask for a 1-5 rating when an agent resolves the conversation.
    ask_csat: bool = True


@dataclass(frozen=True)
class FaqPolicy:
    answer_score: float = 0.07
    min_lead: float = 0.01
    suggest_score: float = 0.05
    # An intent's FAQ entry is answered when the knowledge base ranks it first, at suggest_score or
    # more and this far ahead of the runner-up (else "did you mean").
    agree_lead: float = 0.01
    # Below answer_score, an entry at suggest_score or more this far ahead of the runner-up is answered too
    # (None: never).
    clear_lead: float | None = None
    # ... unless the intent model reads the message as out of scope with at least this confidence (None: at
    # thresholds.min_intent_confidence).
    clear_lead_out_of_scope: float | None = None
    # An intent this sure whose intent lists no FAQ entry (it has an answer of its own: changing the e-mail
    # on an account, switching accounts) is answered by the intent, not by an entry that looks like it
    # (None: the knowledge base's answer wins).
    own_answer_confidence: float | None = None


@dataclass(frozen=True)
class ProductPolicy:
    trigger: dict[str, re.Pattern[str]]
    filler: dict[str, re.Pattern[str]]
    min_lead: float = 0.04
    spread: float = 0.03
    max_results: int = 3
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Prices asked in another currency (yuan: 元, 块, ¥, 人民币) are converted at these rates:
    # units of that currency per unit of the catalogue's currency. Without a rate the
    # shopper is told the catalogue's currency instead.
    exchange_rates: dict[str, float] = field(default_factory=dict)
    # Looser signs of a product question ("有...吗", "i need a"): a product search, but "not found"
    # is not said on their word alone.
    weak_trigger: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # Words that name no product ("stuff", "用品"): with a category word, a question left with
    # nothing else lists that category's products instead of searching for a name.
    generic: dict[str, re.Pattern[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderPolicy:
    """Orders in a conversation: which intents look one up, and how long one stays the subject."""

    intents: frozenset[str] = frozenset()
    # The current order (the last one given or shown) is what follow-ups ("cancel it") are about
    # for this many turns.
    context_turns: int = 6
    # With a current order, these intents and FAQ entries are asked about that order.
    follow_ups: dict[str, str] = field(default_factory=dict)
    faq_follow_ups: dict[str, str] = field(default_factory=dict)
    # The buttons offered with an order number that came without a clear request: label -> intent.
    actions: dict[str, dict[str, str]] = field(default_factory=dict)
    # A message that is an order number and only these words ("my order number is", "订单") is no
    # request, whatever the intent model says: the bot asks what to do with the order.
    bare: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # Words that make an order question about the shopper's own order ("my", "我的").
    personal: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # ... unless they ask how it is done ("I want to return it, how do I do that?"): the FAQ's answer, then
    # the offer to check an order.
    how: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # "Has it been cancelled?": a question about the order's status, not a request to cancel it.
    cancelled_question: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # "Return it" read as a cancellation, on an order already delivered (where nothing can be cancelled): a
    # return, answered as get_refund. Chinese 退 is return and refund alike.
    return_words: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # A complaint about an order is the order question its words name: intent -> words per language
    # ("my refund never came" is a refund question). Without them it is "where is it".
    complaint_topics: dict[str, dict[str, re.Pattern[str]]] = field(default_factory=dict)
    # Money said to be due and missing ("I never got my money back"): with a low mood, a refund asked for a
    # delivered order is a dispute (otherwise a return); a refund already sent is a dispute however calm.
    refund_missing: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # A parcel said to be lost ("you lost my parcel again", "快递弄丢了"): nothing the bot can look up finds
    # it, so an angry complaint that says so, without an order number, goes to a person at once.
    lost: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # "Which carrier has it?" with an order in the conversation: that order's status (it names the carrier).
    carrier_question: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # An intent confidence too low to act on, at which "where is it" (track_order, delivery_period) is
    # still taken as the likeliest reading of a message with an order number, or about the current order.
    unsure_where: float = 0.3
    # Personal words call for the order number when the order intent is at least this sure; below it, a
    # question the knowledge base is sure of gets the FAQ's answer, then the offer to check an order
    # ("用礼品卡买的东西退了钱退到哪": "到哪" is personal, the question is how refunds are paid). None: always.
    personal_sure: float | None = None
    # An order intent this sure, in personal words, about the order in the conversation: that order's request,
    # not the FAQ entry the knowledge base finds closer. None: the entry wins.
    order_sure: float | None = None


@dataclass(frozen=True)
class SmallTalk:
    """A greeting or thanks: a whole message that matches ``pattern`` gets ``reply``."""

    pattern: dict[str, re.Pattern[str]]
    reply: dict[str, str]


@dataclass(frozen=True)
class Policy:
    min_intent_confidence: float
    misunderstood_handoff_after: int
    angry_sentiment_score: float
    angry_handoff_after: int
    handoff_intents: frozenset[str]
    priority: dict[str, int]
    slot_patterns: dict[str, re.Pattern[str]]
    messages: dict[str, dict[str, object]]
    intents: dict[str, IntentPolicy]
    mood: MoodPolicy = MoodPolicy()
    faq: FaqPolicy = FaqPolicy()
    outcomes: OutcomePolicy = OutcomePolicy()
    # An angry message with one of these intents hands off at once: nothing to answer but the intent's text.
    angry_handoff_intents: frozenset[str] = frozenset()
    products: ProductPolicy | None = None
    orders: OrderPolicy = OrderPolicy()
    status_names: dict[str, dict[str, str]] = field(default_factory=dict)
    small_talk: dict[str, SmallTalk] = field(default_factory=dict)  # greeting | thanks
    # Words that ask nothing ("um", "那个"): a message of only these (and keyboard mashes) is not understood,
    # whatever intent the model reads into it.
    fillers: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # Intents that are a hand-off too when the message asks to be put through (handoff.put_through).
    put_through_intents: frozenset[str] = frozenset()
    put_through: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # Words that name a person (handoff.person): a positive message without them is praise, not a hand-off.
    handoff_person: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # What a message the intent model calls out of scope gets (default: messages.not_understood).
    out_of_scope: dict[str, str] = field(default_factory=dict)
    # Words that make a message about the shop itself (its app, a store in a city): never out of scope, and
    # no product search; what the bot does not know of it is "not understood", on the way to a person.
    about_the_shop: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # Questions about going to a shop in person: the online how-to-order answer is not theirs.
    in_person: dict[str, re.Pattern[str]] = field(default_factory=dict)

    @property
    def order_intents(self) -> frozenset[str]:
        return self.orders.intents

    def message(self, name: str, lang: str, /, **values: object) -> str:
        values.setdefault("faq", FaqTexts())
        text = str(self.messages[name][lang]).format(**values)
        return re.sub(r" {2,}", " ", text).strip() if "{faq[" in str(self.messages[name][lang]) else text

    def quick_replies(self, lang: str, name: str = "quick_replies") -> tuple[str, ...]:
        return tuple(self.messages[name][lang])  # type: ignore[arg-type]


ADDED_MESSAGES = frozenset(
    {
        "ask_order_action",
        "queued_ack",
        "leave_message_ack",
        "products_none_subject",
        "products_nearest",
        "price_converted",
        "price_in_currency",
        "ask_order_number_after_faq",
        "by_carrier",
        "did_that_help",
        "helped_yes",
        "helped_no",
        "csat_question",
        "csat_thanks",
        "refund_none_delivered",
    }
)


QUICK_REPLIES = ("quick_replies", "agents_busy_quick_replies", "talk_to_person_quick_replies")
ADDED_QUICK_REPLIES = ("helped_quick_replies", "csat_quick_replies")  # taken from the packaged file when left out


def _packaged_messages() -> dict:
    return yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))["messages"]


def _ids(value: object) -> tuple[str, ...]:
    """One FAQ entry id or a list of them."""
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)  # type: ignore[union-attr]


def _need(d: dict, name: str, where: str):
    if not isinstance(d, dict) or name not in d:
        raise PolicyError(f"{where}: missing '{name}'")
    return d[name]


def _texts(d: dict, where: str) -> dict[str, str]:
    out = {}
    for lang in LANGUAGES:
        text = _need(d, lang, where)
        if not isinstance(text, str) or not text.strip():
            raise PolicyError(f"{where}.{lang}: must be a non-empty text")
        out[lang] = text
    return out


def _regex(spec: dict, where: str) -> dict[str, re.Pattern[str]]:
    out = {}
    for lang in LANGUAGES:
        try:
            out[lang] = re.compile(_need(spec, lang, where), re.IGNORECASE)
        except re.error as exc:
            raise PolicyError(f"{where}.{lang} is not a valid regular expression: {exc}") from exc
    return out


def _optional_regex(section: dict, key: str, where: str) -> dict[str, re.Pattern[str]]:
    """``_regex`` of ``section[key]`` (named ``where`` in errors), or none where the key is left out."""
    return _regex(section[key], where) if section.get(key) else {}


def _section(cls, raw: dict, name: str, **extra):
    """A dataclass from an optional YAML section: defaults for what is left out, errors for unknown keys."""
    spec = raw.get(name) or {}
    if not isinstance(spec, dict):
        raise PolicyError(f"{name}: must be a mapping")
    known = {f for f in cls.__dataclass_fields__}
    unknown = set(spec) - known
    if unknown:
        raise PolicyError(f"{name}: unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        return cls(**{**{k: v for k, v in spec.items() if k not in extra}, **extra})
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{name}: {exc}") from exc


def load_policy(path: str | Path | None = None) -> Policy:
    path = Path(path) if path else DEFAULT_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read policies file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policies file {path} is not valid YAML: {exc}") from exc
    where = str(path)
    th = _need(raw, "thresholds", where)
    ho = _need(raw, "handoff", where)
    msgs = _need(raw, "messages", where)
    names = (
        "greeting",
        "not_understood",
        "handoff",
        "handoff_angry",
        "agent_joined",
        "back_to_bot",
        "ask_order_number",
        "text_only",
        "rate_limited",
        "agents_busy",
        "apology",
        "thanks",
        "faq_other_language",
        "faq_did_you_mean",
        "not_understood_offer_agent",
        "products_found",
        "product_line",
        "in_stock",
        "out_of_stock",
        "products_none",
        "price_under",
        "price_over",
        "price_between",
        "products_from_orders",
        "order_not_found",
        "order_source_down",
        "expected_by",
        "tracking_clause",
        "last_event",
        *(f"status_{status}" for status in ORDER_STATUSES),
        "cancel_possible",
        "cancel_shipped",
        "too_late",
        "already_closed",
        "change_by_agent",
        "address_shipped",
        "refund_cancel_instead",
        "refund_after_delivery",
        "refund_return",
        "refund_none",
        "refund_cancelled",
        "refund_dispute",
        *sorted(ADDED_MESSAGES),
    )
    # Texts added after a shop may have copied the file: taken from the packaged one when left out.
    newer = {n: d for n, d in _packaged_messages().items() if n in ADDED_MESSAGES and n not in msgs}
    messages: dict[str, dict[str, object]] = {
        n: dict(_texts(newer.get(n) or _need(msgs, n, f"{where}: messages"), f"messages.{n}")) for n in names
    }
    status_names = {
        st: _texts(_need(_need(msgs, "status_names", f"{where}: messages"), st, "messages.status_names"), st)
        for st in ORDER_STATUSES
    }
    packaged = _packaged_messages()
    for name in (*QUICK_REPLIES, *ADDED_QUICK_REPLIES):
        qr = (
            packaged[name]
            if name in ADDED_QUICK_REPLIES and name not in msgs
            else _need(msgs, name, f"{where}: messages")
        )
        messages[name] = {lang: tuple(_need(qr, lang, f"messages.{name}")) for lang in LANGUAGES}
    intents = {}
    for name, spec in (_need(raw, "intents", where) or {}).items():
        qrs = spec.get("quick_replies") or {}
        intents[name] = IntentPolicy(
            texts=_texts(spec, f"intents.{name}"),
            needs=tuple(spec.get("needs") or ()),
            quick_replies={lang: tuple(v) for lang, v in qrs.items()},
            faq=_ids(spec.get("faq")),
            related_faq=_ids(spec.get("related_faq")),
        )
    slots = {}
    for name, spec in (raw.get("slots") or {}).items():
        try:
            slots[name] = re.compile(_need(spec, "pattern", f"slots.{name}"))
        except re.error as exc:
            raise PolicyError(f"slots.{name}.pattern is not a valid regular expression: {exc}") from exc
    for name, ip in intents.items():
        for slot in ip.needs:
            if slot not in slots:
                raise PolicyError(f"intents.{name} needs slot '{slot}', which has no pattern under slots")
    priority = {k: int(v) for k, v in _need(ho, "priority", "handoff").items()}
    for reason in ("angry", "requested", "not_understood", "order_action", "refund_dispute", "mood"):
        _need(priority, reason, "handoff.priority")
    try:
        return Policy(
            min_intent_confidence=float(_need(th, "min_intent_confidence", "thresholds")),
            misunderstood_handoff_after=int(_need(th, "misunderstood_handoff_after", "thresholds")),
            angry_sentiment_score=float(_need(th, "angry_sentiment_score", "thresholds")),
            angry_handoff_after=int(th.get("angry_handoff_after", 1)),
            handoff_intents=frozenset(_need(ho, "intents", "handoff")),
            put_through_intents=frozenset((ho.get("put_through") or {}).get("intents") or ()),
            put_through=_optional_regex(ho, "put_through", "handoff.put_through"),
            handoff_person=_optional_regex(ho, "person", "handoff.person"),
            angry_handoff_intents=frozenset(th.get("angry_handoff_intents") or ()),
            priority=priority,
            slot_patterns=slots,
            messages=messages,
            intents=intents,
            mood=_section(MoodPolicy, raw, "mood"),
            faq=_section(FaqPolicy, raw, "faq"),
            outcomes=_section(OutcomePolicy, raw, "outcomes"),
            products=_products(raw),
            orders=_orders(raw, intents),
            status_names=status_names,
            small_talk=_small_talk(raw),
            fillers=_optional_regex(raw, "fillers", "fillers"),
            out_of_scope=_texts(msgs["out_of_scope"], "messages.out_of_scope") if "out_of_scope" in msgs else {},
            about_the_shop=_optional_regex(raw, "about_the_shop", "about_the_shop"),
            in_person=_optional_regex(raw, "in_person", "in_person"),
        )
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{where}: a threshold is not a number: {exc}") from exc


def _small_talk(raw: dict) -> dict[str, SmallTalk]:
    """The optional ``small_talk:`` section: ``greeting`` and ``thanks``, each a pattern and a reply per language."""
    spec = raw.get("small_talk") or {}
    unknown = set(spec) - {"greeting", "thanks"}
    if unknown:
        raise PolicyError(f"small_talk: unknown entry(ies) {', '.join(sorted(unknown))} (greeting, thanks)")
    return {
        name: SmallTalk(
            _regex(_need(entry, "pattern", f"small_talk.{name}"), f"small_talk.{name}.pattern"),
            _texts(_need(entry, "reply", f"small_talk.{name}"), f"small_talk.{name}.reply"),
        )
        for name, entry in spec.items()
    }


def _orders(raw: dict, intents: dict[str, IntentPolicy]) -> OrderPolicy:
    spec = raw.get("orders") or {}
    if not isinstance(spec, dict):
        raise PolicyError("orders: must be a mapping")
    known = {
        "intents",
        "context_turns",
        "follow_ups",
        "faq_follow_ups",
        "actions",
        "bare",
        "personal",
        "complaint_topics",
        "unsure_where",
        "personal_sure",
        "how",
        "cancelled_question",
        "return_words",
        "refund_missing",
        "lost",
        "carrier_question",
        "order_sure",
    }
    if unknown := set(spec) - known:
        raise PolicyError(f"orders: unknown setting(s) {', '.join(sorted(unknown))}")
    order_intents = frozenset(spec.get("intents") or ())
    follow_ups = {str(k): str(v) for k, v in (spec.get("follow_ups") or {}).items()}
    faq_follow_ups = {str(k): str(v) for k, v in (spec.get("faq_follow_ups") or {}).items()}
    actions = {}
    for lang in LANGUAGES if spec.get("actions") else ():
        buttons = _need(spec["actions"], lang, "orders.actions")
        if not isinstance(buttons, dict) or not buttons:
            raise PolicyError(f"orders.actions.{lang}: must map button labels to order intents")
        actions[lang] = {str(k): str(v) for k, v in buttons.items()}
    topics = spec.get("complaint_topics") or {}
    if not isinstance(topics, dict):
        raise PolicyError("orders.complaint_topics: must map order intents to words per language")
    complaint_topics = {str(k): _regex(v, f"orders.complaint_topics.{k}") for k, v in topics.items()}
    targets = [*follow_ups.values(), *faq_follow_ups.values(), *(i for b in actions.values() for i in b.values())]
    targets += list(complaint_topics)
    for target in targets:
        if target not in order_intents or target not in intents:
            raise PolicyError(f"orders: '{target}' is not one of orders.intents with a text under intents")
    try:
        context_turns = int(spec.get("context_turns", 6))
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"orders.context_turns: {exc}") from exc
    try:
        unsure_where = float(spec.get("unsure_where", 0.3))
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"orders.unsure_where: {exc}") from exc
    sure: dict[str, float | None] = {}
    for name in ("personal_sure", "order_sure"):
        try:
            sure[name] = None if spec.get(name) is None else float(spec[name])
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"orders.{name}: {exc}") from exc
    patterns = ("bare", "personal", "how", "cancelled_question", "return_words", "refund_missing", "lost")
    words = {name: _optional_regex(spec, name, f"orders.{name}") for name in (*patterns, "carrier_question")}
    try:
        return OrderPolicy(
            order_intents, context_turns, follow_ups, faq_follow_ups, actions,
            complaint_topics=complaint_topics, unsure_where=unsure_where, **sure, **words,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"orders.context_turns: {exc}") from exc


def _products(raw: dict) -> ProductPolicy | None:
    spec = raw.get("products")
    if not spec:
        return None
    cats = {str(k): tuple(str(w) for w in v) for k, v in (spec.get("categories") or {}).items()}
    try:
        rates = {str(k).upper(): float(v) for k, v in (spec.get("exchange_rates") or {}).items()}
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"products.exchange_rates: {exc}") from exc
    if any(r <= 0 for r in rates.values()):
        raise PolicyError("products.exchange_rates: rates must be above 0")
    return _section(
        ProductPolicy, raw, "products",
        trigger=_regex(_need(spec, "trigger", "products"), "products.trigger"),
        filler=_regex(spec.get("filler") or {lang: "(?!)" for lang in LANGUAGES}, "products.filler"),
        categories=cats,
        exchange_rates=rates,
        weak_trigger=_optional_regex(spec, "weak_trigger", "products.weak_trigger"),
        generic=_optional_regex(spec, "generic", "products.generic"),
    )  # fmt: skip
