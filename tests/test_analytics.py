"""Analytics (shopbot/analytics.py) on a generated history of 1,200 conversations with known outcomes, on
SQLite and on PostgreSQL: every figure equals the one computed here, in Python, from the generated rows.

The history: seeded random conversations over four weeks (one day left empty, weeks not starting on the first
day), on the three channels and in both languages, each of one to three episodes that end as the dialogue
ends them: "did that help" yes (resolved by the bot), silence after an answer, a hand-off by any reason
resolved by an agent (then sometimes a rating) or still waiting, or abandoned. Rows are written as the
dialogue runner writes them (a shopper row with its action, event rows with the step's ts), with bot and
agent rows and rows from before actions (no action, no intent) in between.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert

from shopbot import analytics
from shopbot.analytics import Filters
from shopbot.db import engine_for
from shopbot.transcripts import messages

CONVERSATIONS = 1200
FIRST_DAY = date(2024, 4, 3)  # a Wednesday: the first week is a short one
DAYS = 28
EMPTY_DAY = 9  # no conversation starts that day or the day before
DAY_S = 86400
INTENTS = ["track_order", "cancel_order", "get_refund", "delivery_options", "check_payment_methods",
           "contact_human_agent", "product_info", "complaint"]  # fmt: skip
FAQ = ["payment-methods", "shipping-cost", "returns", "warranty", "gift-wrap", "opening-hours"]
REASONS = ["requested", "angry", "not_understood", "order_action", "refund_dispute", "mood"]
OTHER = ["ask:order_number", "ask_order_action", "small_talk:greeting", "small_talk:thanks", "queued_ack", "silent"]
UNANSWERED = ["not_understood", "did_you_mean", "out_of_scope"]


# -- the history -----------------------------------------------------------------------------------------------


def _answer(rng: random.Random, intent: str | None) -> str:
    kind = rng.random()
    if kind < 0.4:
        return f"faq:{rng.choice(FAQ)}"
    if kind < 0.6:
        return f"order:{intent or 'track_order'}"
    if kind < 0.7:
        return f"answer:{intent or 'delivery_options'}"
    return rng.choice(["products", "products_none", "order_not_found"])


class _Conversation:
    """Writes one conversation's rows as the dialogue runner does: a step's rows share its ts."""

    def __init__(self, rng: random.Random, rows: list[dict], cid: str, channel: str, lang: str, ts: float):
        self.rng, self.rows, self.cid, self.channel, self.lang, self.ts, self.seq = rng, rows, cid, channel, lang, ts, 0

    def row(self, sender: str, action=None, detail=None, intent=None, message_id: str | None = None) -> None:
        self.seq += 1
        self.rows.append({
            "conversation_id": self.cid, "message_id": message_id or f"m{self.seq}", "channel": self.channel,
            "sender": sender, "text": "" if sender == "event" else f"text {self.seq}", "ts": self.ts,
            "language": self.lang, "intent": intent, "intent_confidence": 0.9 if intent else None,
            "action": action, "detail": detail,
        })  # fmt: skip

    def shopper(self, action: str | None, intent: str | None = None, events=(), reply: bool = True) -> None:
        """One dialogue step: the shopper's row, its events, the bot's reply."""
        self.ts += self.rng.uniform(5, 400)
        mid = f"m{self.seq + 1}"
        self.row("shopper", action, intent=intent)
        for i, (ev, detail) in enumerate(events):
            self.row("event", ev, detail, message_id=f"{mid}:e{i}")
        if reply:
            self.row("bot")

    def event(self, ev: str, detail: str) -> None:
        """An event outside a shopper's step (the end by silence, an agent's resolve)."""
        self.ts += self.rng.uniform(60, 900)
        self.row("event", ev, detail, message_id=f"idle:{self.ts:.6f}")


def _episode(rng: random.Random, c: _Conversation) -> None:
    last = answered = None
    for _ in range(rng.choice([1, 1, 2, 3])):
        intent = rng.choice([*INTENTS, None]) if rng.random() < 0.97 else None
        kind = rng.random()
        if kind < 0.55:
            last = answered = _answer(rng, intent)
        elif kind < 0.75:
            last = rng.choice(UNANSWERED)
        else:
            last = rng.choice(OTHER)
        c.shopper(last, intent)
    end = rng.random()
    if answered and end < 0.3:  # "did that help?" yes: resolved by the bot
        c.shopper("helped:yes", rng.choice(INTENTS), [("helped:yes", answered), ("outcome:resolved_bot", "confirmed")])
        return
    if answered and end < 0.45:  # no; then perhaps a person
        c.shopper("helped:no", rng.choice(INTENTS), [("helped:no", answered)])
        last, end = "helped:no", rng.uniform(0.25, 1)  # no end by silence as "resolved" after a "no" here
    if end < 0.25 and answered:
        c.event("outcome:resolved_bot", "idle")
    elif end < 0.7:
        reason = rng.choice(REASONS)
        c.shopper(f"handoff:{reason}", "contact_human_agent" if reason == "requested" else rng.choice(INTENTS))
        if rng.random() < 0.3:  # a message while waiting
            c.shopper("queued_ack", rng.choice(INTENTS))
        if rng.random() < 0.7:
            c.row("agent")
            c.event("outcome:resolved_agent", reason)
            if rng.random() < 0.6:
                c.shopper("csat", None, [(f"csat:{rng.randint(1, 5)}", "")])
        else:
            c.event("outcome:handed_off", reason)
    else:
        c.event("outcome:abandoned", last or "")


def history(seed: int = 20) -> list[dict]:
    """The transcript rows of CONVERSATIONS conversations, in the order a flush would insert them."""
    rng = random.Random(seed)
    rows: list[dict] = []
    first = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp()
    for n in range(CONVERSATIONS):
        channel = rng.choice(["web", "web", "telegram", "slack"])
        day = rng.choice([d for d in range(DAYS) if d not in (EMPTY_DAY - 1, EMPTY_DAY)])
        start = first + day * DAY_S + rng.uniform(0, DAY_S)  # some run past midnight
        c = _Conversation(rng, rows, f"{channel}:test:{n}", channel, rng.choice(["en", "en", "zh"]), start)
        if rng.random() < 0.05:  # from before the dialogue recorded actions
            c.row("shopper")
            c.row("bot")
        for _ in range(rng.choice([1, 1, 2, 3])):
            _episode(rng, c)
    return rows


# -- the figures, computed here --------------------------------------------------------------------------------


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _week(ts: float) -> date:
    d = _day(ts)
    return d - timedelta(days=d.weekday())


def _kept(rows: list[dict], start: date | None, end: date | None, channel: str | None, language: str | None):
    for r in rows:
        d = _day(r["ts"])
        if (start and d < start) or (end and d > end) or (channel and r["channel"] != channel):
            continue
        if language and r["language"] != language:
            continue
        yield r


def _answered(action: str | None) -> bool:
    return bool(action) and (action.split(":")[0] in ("faq", "order", "answer") or
                             action in ("products", "products_none", "order_not_found"))  # fmt: skip


def _unanswered(action: str | None) -> bool:
    return action in ("not_understood", "did_you_mean", "out_of_scope", "handoff:not_understood")


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def expected_figures(rows: list[dict]) -> dict:
    n: dict[str, int] = defaultdict(int)
    scores = []
    for r in rows:
        a = r["action"] or ""
        if r["sender"] == "event":
            kind, _, value = a.partition(":")
            if kind == "outcome":
                n["outcomes"] += 1
                n[value] += 1
            elif kind == "helped":
                n[f"helped_{value}"] += 1
            elif kind == "csat":
                scores.append(int(value))
        elif r["sender"] == "shopper":
            n["answered"] += _answered(a)
            n["unanswered"] += _unanswered(a)
            if a.startswith("handoff:"):
                n[f"handoffs_{a[8:]}"] += 1
    out = {k: n[k] for k in ("outcomes", "resolved_bot", "resolved_agent", "handed_off", "abandoned")}
    out["automation_rate"] = _rate(n["resolved_bot"], n["outcomes"])
    out["answered"], out["unanswered"] = n["answered"], n["unanswered"]
    out["answer_rate"] = _rate(n["answered"], n["answered"] + n["unanswered"])
    out |= {f"handoffs_{r}": n[f"handoffs_{r}"] for r in REASONS}
    out |= {f"handoff_rate_{r}": _rate(n[f"handoffs_{r}"], n["outcomes"]) for r in REASONS}
    out["helped_yes"], out["helped_no"] = n["helped_yes"], n["helped_no"]
    out["csat_count"] = len(scores)
    out["csat_mean"] = round(sum(scores) / len(scores), 4) if scores else None
    return out


def expected_outcomes(rows: list[dict], period: str, **f) -> dict:
    kept = [r for r in _kept(rows, **f) if r["sender"] in ("shopper", "event")]
    bucket = _day if period == "day" else _week
    by: dict[str, dict] = {"bucket": defaultdict(list), "channel": defaultdict(list), "language": defaultdict(list)}
    for r in kept:
        by["bucket"][bucket(r["ts"])].append(r)
        by["channel"][r["channel"]].append(r)
        by["language"][r["language"]].append(r)
    series, step = [], timedelta(days=1 if period == "day" else 7)
    if by["bucket"]:
        d, last = min(by["bucket"]), max(by["bucket"])
        while d <= last:
            series.append({"period": d.isoformat(), **expected_figures(by["bucket"].get(d, []))})
            d += step
    return {
        "series": series,
        "totals": expected_figures(kept),
        "by_channel": [{"channel": k, **expected_figures(v)} for k, v in sorted(by["channel"].items())],
        "by_language": [{"language": k, **expected_figures(v)} for k, v in sorted(by["language"].items())],
    }


def _by_conversation(rows: list[dict]) -> dict[str, list[tuple[int, dict]]]:
    out: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for i, r in enumerate(rows):  # i: the insertion order, as the table's id
        out[r["conversation_id"]].append((i, r))
    return out


def expected_intents(rows: list[dict], **f) -> list[dict]:
    conv = _by_conversation(rows)
    figures: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in _kept(rows, **f):
        a = r["action"]
        if r["sender"] == "shopper":
            g = figures[r["intent"]]
            g["volume"] += 1
            g["answered"] += _answered(a)
            g["unanswered"] += _unanswered(a)
            g["handoffs"] += bool(a) and a.startswith("handoff:")
        elif r["sender"] == "event" and a in ("helped:yes", "helped:no"):
            # the latest shopper row of the conversation, at or before the event, that gave the answer rated
            rated = [s for _, s in conv[r["conversation_id"]]
                     if s["sender"] == "shopper" and s["action"] == r["detail"] and s["ts"] <= r["ts"]]  # fmt: skip
            intent = max(rated, key=lambda s: s["ts"])["intent"] if rated else None
            figures[intent]["helped_" + a[7:]] += 1
    out = []
    for intent, g in figures.items():
        out.append({"intent": intent, "volume": g["volume"], "answered": g["answered"], "unanswered": g["unanswered"],
                    "answer_rate": _rate(g["answered"], g["answered"] + g["unanswered"]), "handoffs": g["handoffs"],
                    "helped_yes": g["helped_yes"], "helped_no": g["helped_no"]})  # fmt: skip
    return sorted(out, key=lambda r: (-r["volume"], r["intent"] or ""))


def expected_faq(rows: list[dict], questions: dict[str, str], **f) -> list[dict]:
    conv = _by_conversation(rows)
    ids = {id(r): i for i, r in enumerate(rows)}
    figures: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in _kept(rows, **f):
        a = r["action"] or ""
        if r["sender"] == "shopper" and a.startswith("faq:"):
            figures[a[4:]]["volume"] += 1
        elif r["sender"] == "event" and a in ("helped:yes", "helped:no") and r["detail"].startswith("faq:"):
            figures[r["detail"][4:]]["helped_" + a[7:]] += 1
        elif r["sender"] == "shopper" and a.startswith("handoff:"):
            me = (r["ts"], ids[id(r)])
            before = [(s["ts"], i, s) for i, s in conv[r["conversation_id"]]
                      if s["sender"] == "shopper" and (s["ts"], i) < me and s["action"]
                      and s["action"] not in ("helped:yes", "helped:no", "csat")]  # fmt: skip
            if before and (prev := max(before, key=lambda t: t[:2])[2]["action"]).startswith("faq:"):
                figures[prev[4:]]["handoffs_after"] += 1
    out = [{"entry": e, "question_en": questions.get(e), "question_zh": None, "volume": g["volume"],
            "helped_yes": g["helped_yes"], "helped_no": g["helped_no"], "handoffs_after": g["handoffs_after"]}
           for e, g in figures.items()]  # fmt: skip
    return sorted(out, key=lambda r: (-r["volume"], r["entry"]))


# -- the databases ---------------------------------------------------------------------------------------------

ROWS = history()
QUESTIONS = {e: f"Question about {e}?" for e in FAQ[:-1]}  # the last entry was removed since
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _load(engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(messages), ROWS)
        faq = analytics._faq
        conn.execute(insert(faq), [{"id": e, "question_en": q, "question_zh": None} for e, q in QUESTIONS.items()])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        eng = engine_for(f"sqlite:///{tmp_path_factory.mktemp('analytics') / 'shopbot.db'}")
        _load(eng)
        yield eng
        eng.dispose()
        return
    psycopg = pytest.importorskip("psycopg")
    name = f"shopbot_analytics_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        eng = engine_for(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        _load(eng)
        yield eng
        eng.dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


FILTERS = [
    {},
    {"start": FIRST_DAY + timedelta(days=5), "end": FIRST_DAY + timedelta(days=19), "channel": "telegram"},
    {"language": "zh", "start": FIRST_DAY + timedelta(days=8)},
]


def _filters(start=None, end=None, channel=None, language=None) -> Filters:
    query = {"from": start.isoformat() if start else "", "to": end.isoformat() if end else ""}
    return Filters.parse({**query, "channel": channel or "", "language": language or ""})


def _without(figures: dict, key: str) -> dict:
    return {k: v for k, v in figures.items() if k != key}


def _csv_rows(text: str) -> list[dict]:
    def value(v: str):
        if v == "":
            return None
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]


def test_the_history_is_large_and_varied():
    outcomes = [r for r in ROWS if r["sender"] == "event" and r["action"].startswith("outcome:")]
    assert len({r["conversation_id"] for r in ROWS}) == CONVERSATIONS >= 1000 and len(outcomes) > CONVERSATIONS
    assert {r["action"][8:] for r in outcomes} == set(analytics.OUTCOMES)
    actions = {r["action"] for r in ROWS if r["action"]}
    assert {a for a in actions if a.startswith("handoff:")} == {f"handoff:{x}" for x in REASONS}
    assert {a for a in actions if a.startswith("csat:")} == {f"csat:{n}" for n in range(1, 6)}
    days = {_day(r["ts"]) for r in ROWS}
    assert FIRST_DAY + timedelta(days=EMPTY_DAY) not in days and len(days) >= DAYS - 3
    past_midnight = [r for i, r in enumerate(ROWS) if i and r["conversation_id"] == ROWS[i - 1]["conversation_id"]
                     and _day(r["ts"]) != _day(ROWS[i - 1]["ts"])]  # fmt: skip
    assert len(past_midnight) > 10


@pytest.mark.parametrize("period", ["day", "week"])
def test_outcomes_over_time_per_channel_and_language(engine, period):
    for f in FILTERS:
        got = analytics.outcomes(engine, _filters(**f), period)
        want = expected_outcomes(ROWS, period, **{"start": None, "end": None, "channel": None, "language": None, **f})
        assert got["handoff_reasons"] == REASONS
        for part in ("totals", "by_channel", "by_language", "series"):
            assert got[part] == want[part], (f, part)
        if period == "day" and not f:
            empty = FIRST_DAY + timedelta(days=EMPTY_DAY)
            assert [s for s in got["series"] if s["period"] == empty.isoformat()][0]["outcomes"] == 0
            assert len(got["series"]) >= DAYS and got["totals"]["outcomes"] > CONVERSATIONS
        if period == "week":
            assert all(date.fromisoformat(s["period"]).weekday() == 0 for s in got["series"])
        csv_text = analytics.to_csv(got)
        parsed = _csv_rows(csv_text)
        plain = json.loads(json.dumps(got))
        keys = [s["period"] for s in plain["series"]] + [None] + [c["channel"] for c in plain["by_channel"]]
        assert [r.pop("key") for r in parsed] == keys + [g["language"] for g in plain["by_language"]]
        scopes = [period] * len(plain["series"]) + ["total"] + ["channel"] * len(plain["by_channel"])
        assert [r.pop("scope") for r in parsed] == scopes + ["language"] * len(plain["by_language"])
        figures = [_without(s, "period") for s in plain["series"]] + [plain["totals"]]
        figures += [_without(c, "channel") for c in plain["by_channel"]]
        assert parsed == figures + [_without(g, "language") for g in plain["by_language"]]


def test_per_intent_and_per_faq_entry(engine):
    for f in FILTERS:
        flt = {"start": None, "end": None, "channel": None, "language": None, **f}
        got = analytics.intents(engine, _filters(**f))
        assert got["intents"] == expected_intents(ROWS, **flt), f
        assert _csv_rows(analytics.to_csv(got)) == json.loads(json.dumps(got["intents"]))
        got = analytics.faq(engine, _filters(**f))
        assert got["faq"] == expected_faq(ROWS, QUESTIONS, **flt), f
        assert _csv_rows(analytics.to_csv(got)) == json.loads(json.dumps(got["faq"]))
    whole = analytics.faq(engine, Filters())["faq"]
    assert {r["entry"] for r in whole} == set(FAQ) and all(r["handoffs_after"] for r in whole)
    assert sum(r["helped_yes"] + r["helped_no"] for r in analytics.intents(engine, Filters())["intents"]) == sum(
        r["action"] in ("helped:yes", "helped:no") for r in ROWS if r["sender"] == "event")  # fmt: skip


def test_bad_filters_are_refused_with_a_reason():
    for query, reason in (
        ({"from": "2024-13-01"}, "from must be a date"),
        ({"to": "yesterday"}, "to must be a date"),
        ({"to": "2024-W18-3"}, "to must be a date"),
        ({"from": "2024-05-02", "to": "2024-05-01"}, "from must not be after to"),
        ({"channel": "fax"}, "channel must be one of web, telegram, slack"),
        ({"language": "fr"}, "language must be one of en, zh"),
    ):
        with pytest.raises(analytics.BadQuery, match=reason):
            Filters.parse(query)
    with pytest.raises(analytics.BadQuery, match="period must be one of day, week"):
        analytics.period_of({"period": "month"})
    f = Filters.parse({"from": "2024-05-01", "to": "2024-05-01"})
    assert f.end - f.start == 86400 and f.describe()["to"] == "2024-05-01"
    assert Filters.parse({"to": "9999-12-31"}).describe()["to"] == "9999-12-31"
    assert analytics.to_csv({"faq": [{"entry": "=cmd", "volume": 1}]}).splitlines()[1] == "'=cmd,1"
