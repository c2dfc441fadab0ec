"""Analytics the shop can act on, computed in SQL from the transcripts (``transcript_messages``).

Three reports, each a plain dict (JSON as it is) with a CSV rendering (:func:`to_csv`):

- :func:`outcomes`: automation rate, answer rate, hand-off rate by reason, "did that help", CSAT, over time
  (day or week, weeks start on Monday, UTC), in total, per channel and per language;
- :func:`intents`: per intent of the shoppers' messages: volume, answered, unanswered, hand-offs,
  "did that help" yes / no;
- :func:`faq`: per FAQ entry answered: volume, "did that help" yes / no, hand-offs after it.

The definitions (docs/admin.md, "Analytics"), over the rows the dialogue writes (``action`` and ``detail``,
``shopbot/transcripts.py``):

- an *outcome* is an event row ``outcome:KIND`` (one per episode); automation rate = ``resolved_bot`` / all;
- hand-off rate of a reason = shopper rows ``handoff:REASON`` / all outcomes;
- answer rate = answered / (answered + unanswered) over shopper rows (:data:`ANSWERED`, :data:`UNANSWERED`;
  small talk, asking for a detail, queued and feedback are neither);
- CSAT = the mean and count of the ``csat:N`` events.

Every figure is a SQL aggregate (SQLite and PostgreSQL alike); Python only names the columns and divides.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, and_, case, cast, func, literal_column, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import column, table

from .transcripts import messages

DAY_S = 86400
PERIODS = ("day", "week")
CHANNELS = ("web", "telegram", "slack")
LANGUAGES = ("en", "zh")
OUTCOMES = ("resolved_bot", "resolved_agent", "handed_off", "abandoned")
# Always reported, in this order; a reason found in the data besides these gets a column too.
HANDOFF_REASONS = ("requested", "angry", "not_understood", "order_action", "refund_dispute", "mood")
ANSWERED_PREFIXES = ("faq:", "order:", "answer:")
ANSWERED = ("products", "products_none", "order_not_found")
UNANSWERED = ("not_understood", "did_you_mean", "out_of_scope", "handoff:not_understood")
CSAT_SCORES = (1, 2, 3, 4, 5)
RATE_DIGITS = 4

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_faq = table("faq", column("id"), column("question_en"), column("question_zh"))


class BadQuery(ValueError):
    """A filter or option that cannot be used; the message says which and what it may be."""


@dataclass(frozen=True)
class Filters:
    """Which rows count: ``start`` <= ts < ``end`` (epoch seconds), one channel, one language (None: all)."""

    start: float | None = None
    end: float | None = None
    channel: str | None = None
    language: str | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        """From a request's query: ``from`` and ``to`` (ISO dates, UTC, both days included), ``channel``,
        ``language``; raises :class:`BadQuery` with the reason."""
        first, last = _date(query, "from"), _date(query, "to")
        if first and last and first > last:
            raise BadQuery("from must not be after to")
        return cls(
            start=_epoch(first) if first else None,
            end=_epoch(last) + DAY_S if last else None,
            channel=_choice(query, "channel", CHANNELS),
            language=_choice(query, "language", LANGUAGES),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "from": _iso(self.start) if self.start is not None else None,
            "to": _iso(self.end - DAY_S) if self.end is not None else None,
            "channel": self.channel,
            "language": self.language,
        }


def _date(query: Mapping[str, str], name: str) -> date | None:
    raw = query.get(name) or ""
    if not raw:
        return None
    try:
        if not _DATE.fullmatch(raw):  # fromisoformat alone takes other forms too (20240501, 2024-W18-3)
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a date as YYYY-MM-DD") from None


def _choice(query: Mapping[str, str], name: str, allowed: Sequence[str]) -> str | None:
    raw = query.get(name) or ""
    if raw and raw not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)}")
    return raw or None


def period_of(query: Mapping[str, str]) -> str:
    return _choice(query, "period", PERIODS) or "day"


def _epoch(d: date) -> float:
    return float((d - date(1970, 1, 1)).days * DAY_S)


def _iso(ts: float) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts)).date().isoformat()


# -- SQL building blocks ---------------------------------------------------------------------------------------

m = messages.c


def _where(f: Filters, sender: str | None = None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if sender:
        out.append(m.sender == sender)
    if f.start is not None:
        out.append(m.ts >= f.start)
    if f.end is not None:
        out.append(m.ts < f.end)
    if f.channel:
        out.append(m.channel == f.channel)
    if f.language:
        out.append(m.language == f.language)
    return out


def _floor(conn: Connection, expr: ColumnElement) -> ColumnElement:
    """A whole number of ``expr`` (positive): PostgreSQL's CAST rounds a float, SQLite's truncates it."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor(expr), BigInteger)
    return cast(expr, Integer)


def _bucket(conn: Connection, period: str) -> ColumnElement:
    """The day (days since 1970-01-01) or week (weeks since Monday 1969-12-29) of a row, UTC. The constants are
    literals, not parameters, so that PostgreSQL sees the same expression in SELECT and GROUP BY."""
    if period == "day":
        return _floor(conn, m.ts / literal_column(str(DAY_S)))
    return _floor(conn, (m.ts + literal_column(str(3 * DAY_S))) / literal_column(str(7 * DAY_S)))


def _bucket_start(period: str, n: int) -> str:
    return _iso(n * DAY_S if period == "day" else (n * 7 - 3) * DAY_S)


def _count(cond: ColumnElement[bool]) -> ColumnElement:
    return func.sum(case((cond, 1), else_=0))


def _is_answered(action: ColumnElement) -> ColumnElement[bool]:
    return or_(*(action.startswith(p, autoescape=True) for p in ANSWERED_PREFIXES), action.in_(ANSWERED))


def _is_unanswered(action: ColumnElement) -> ColumnElement[bool]:
    return action.in_(UNANSWERED)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, RATE_DIGITS) if whole else None


def _handoff_reasons(conn: Connection, f: Filters) -> list[str]:
    seen = conn.execute(
        select(m.action).distinct().where(*_where(f, "shopper"), m.action.startswith("handoff:", autoescape=True))
    ).scalars()
    extra = sorted({a.removeprefix("handoff:") for a in seen} - set(HANDOFF_REASONS))
    return [*HANDOFF_REASONS, *extra]


# -- outcomes over time ----------------------------------------------------------------------------------------


def _outcome_columns(c, reasons: Sequence[str]) -> list[ColumnElement]:
    """The aggregates of the outcome report over rows with columns ``sender`` and ``action`` (``c``)."""
    event, shopper, action = c.sender == "event", c.sender == "shopper", c.action
    cols = [_count(and_(event, action.startswith("outcome:", autoescape=True))).label("outcomes")]
    cols += [_count(and_(event, action == f"outcome:{k}")).label(k) for k in OUTCOMES]
    cols += [
        _count(and_(shopper, _is_answered(action))).label("answered"),
        _count(and_(shopper, _is_unanswered(action))).label("unanswered"),
    ]
    cols += [_count(and_(shopper, action == f"handoff:{r}")).label(f"handoffs_{r}") for r in reasons]
    cols += [
        _count(and_(event, action == "helped:yes")).label("helped_yes"),
        _count(and_(event, action == "helped:no")).label("helped_no"),
        _count(and_(event, action.in_([f"csat:{n}" for n in CSAT_SCORES]))).label("csat_count"),
        func.sum(case(*((and_(event, action == f"csat:{n}"), n) for n in CSAT_SCORES), else_=0)).label("csat_sum"),
    ]
    return cols


def _outcome_figures(row: Mapping[str, Any], reasons: Sequence[str]) -> dict[str, Any]:
    n = {
        k: int(row.get(k) or 0)
        for k in ("outcomes", *OUTCOMES, "answered", "unanswered", "helped_yes", "helped_no", "csat_count", "csat_sum")
    }
    handoffs = {r: int(row.get(f"handoffs_{r}") or 0) for r in reasons}
    out: dict[str, Any] = {"outcomes": n["outcomes"], **{k: n[k] for k in OUTCOMES}}
    out["automation_rate"] = _rate(n["resolved_bot"], n["outcomes"])
    out["answered"], out["unanswered"] = n["answered"], n["unanswered"]
    out["answer_rate"] = _rate(n["answered"], n["answered"] + n["unanswered"])
    out |= {f"handoffs_{r}": k for r, k in handoffs.items()}
    out |= {f"handoff_rate_{r}": _rate(k, n["outcomes"]) for r, k in handoffs.items()}
    out["helped_yes"], out["helped_no"] = n["helped_yes"], n["helped_no"]
    out["csat_count"] = n["csat_count"]
    out["csat_mean"] = round(n["csat_sum"] / n["csat_count"], RATE_DIGITS) if n["csat_count"] else None
    return out


def outcomes(engine: Engine, filters: Filters, period: str = "day") -> dict[str, Any]:
    """The outcome figures per day or week (every bucket from the first to the last with data, empty ones as
    zeros), in total, per channel and per language. A rate is None where its denominator is 0."""
    if period not in PERIODS:
        raise BadQuery(f"period must be one of {', '.join(PERIODS)}")
    with engine.connect() as conn:
        reasons = _handoff_reasons(conn, filters)
        rows = (
            select(_bucket(conn, period).label("bucket"), m.channel, m.language, m.sender, m.action)
            .where(*_where(filters), m.sender.in_(("shopper", "event")))
            .subquery()
        )
        figures = select(*_outcome_columns(rows.c, reasons)).select_from(rows)

        def per(key: str) -> list[tuple[Any, dict[str, Any]]]:
            by = rows.c[key]
            q = figures.add_columns(by.label("key")).group_by(by).order_by(by)
            return [(r.key, _outcome_figures(r._mapping, reasons)) for r in conn.execute(q)]

        totals = _outcome_figures(conn.execute(figures).one()._mapping, reasons)
        by_bucket = dict(per("bucket"))
        by_channel, by_language = per("channel"), per("language")
    series = []
    if by_bucket:
        empty = _outcome_figures({}, reasons)
        for n in range(min(by_bucket), max(by_bucket) + 1):
            series.append({"period": _bucket_start(period, n), **by_bucket.get(n, empty)})
    return {
        "period": period,
        "filters": filters.describe(),
        "handoff_reasons": reasons,
        "series": series,
        "totals": totals,
        "by_channel": [{"channel": k, **v} for k, v in by_channel],
        "by_language": [{"language": k, **v} for k, v in by_language],
    }


# -- per intent, per FAQ entry ---------------------------------------------------------------------------------

FEEDBACK = ("helped:yes", "helped:no", "csat")


def _helped_per_intent(conn: Connection, f: Filters) -> dict[str | None, tuple[int, int]]:
    """The "did that help" events per intent: the intent of the shopper row rated, which is the latest of the same
    conversation, at or before the event, whose action is the answer rated (the event's detail)."""
    s = messages.alias("rated")
    intent = (
        select(s.c.intent)
        .where(
            s.c.conversation_id == m.conversation_id, s.c.sender == "shopper", s.c.action == m.detail, s.c.ts <= m.ts
        )
        .order_by(s.c.ts.desc(), s.c.id.desc())
        .limit(1)
        .correlate(messages)
        .scalar_subquery()
    )
    events = (
        select(intent.label("intent"), m.action)
        .where(*_where(f, "event"), m.action.in_(("helped:yes", "helped:no")))
        .subquery()
    )
    e = events.c
    q = select(e.intent, _count(e.action == "helped:yes"), _count(e.action == "helped:no")).group_by(e.intent)
    return {key: (int(yes), int(no)) for key, yes, no in conn.execute(q)}


def intents(engine: Engine, filters: Filters) -> dict[str, Any]:
    """Per intent of the shoppers' messages (the NLU's, confident or not; None where there was none): volume,
    answered, unanswered, answer rate, hand-offs, and the "did that help" answers to what was said to it.
    Most asked first."""
    action = m.action
    with engine.connect() as conn:
        q = (
            select(
                m.intent,
                func.count(),
                _count(_is_answered(action)),
                _count(_is_unanswered(action)),
                _count(action.startswith("handoff:", autoescape=True)),
            )
            .where(*_where(filters, "shopper"))
            .group_by(m.intent)
        )
        counts = {key: tuple(int(v or 0) for v in rest) for key, *rest in conn.execute(q)}
        helped = _helped_per_intent(conn, filters)
    rows = []
    for key in set(counts) | set(helped):
        volume, answered, unanswered, handoffs = counts.get(key, (0, 0, 0, 0))
        yes, no = helped.get(key, (0, 0))
        rows.append(
            {
                "intent": key,
                "volume": volume,
                "answered": answered,
                "unanswered": unanswered,
                "answer_rate": _rate(answered, answered + unanswered),
                "handoffs": handoffs,
                "helped_yes": yes,
                "helped_no": no,
            }
        )
    rows.sort(key=lambda r: (-r["volume"], r["intent"] or ""))
    return {"filters": filters.describe(), "intents": rows}


def _handoffs_after_faq(conn: Connection, f: Filters) -> dict[str, int]:
    """Hand-offs per FAQ answer they followed: a shopper row ``handoff:REASON`` whose latest earlier shopper
    row of the same conversation, "did that help" answers and ratings left out, was that answer."""
    p = messages.alias("before")
    earlier = or_(p.c.ts < m.ts, and_(p.c.ts == m.ts, p.c.id < m.id))
    before = (
        select(p.c.action)
        .where(p.c.conversation_id == m.conversation_id, p.c.sender == "shopper", earlier, p.c.action.not_in(FEEDBACK))
        .order_by(p.c.ts.desc(), p.c.id.desc())
        .limit(1)
        .correlate(messages)
        .scalar_subquery()
    )
    handoffs = (
        select(before.label("answer"))
        .where(*_where(f, "shopper"), m.action.startswith("handoff:", autoescape=True))
        .subquery()
    )
    h = handoffs.c
    q = select(h.answer, func.count()).where(h.answer.startswith("faq:", autoescape=True)).group_by(h.answer)
    return {answer: int(n) for answer, n in conn.execute(q)}


def faq(engine: Engine, filters: Filters) -> dict[str, Any]:
    """Per FAQ entry the bot answered with: volume (shopper messages answered with it), "did that help" yes /
    no (events rating it), hand-offs right after it (:func:`_handoffs_after_faq`), and its question as the
    ``faq`` table has it now (None: an entry since removed). Most used first."""
    with engine.connect() as conn:
        volume = dict(
            conn.execute(
                select(m.action, func.count())
                .where(*_where(filters, "shopper"), m.action.startswith("faq:", autoescape=True))
                .group_by(m.action)
            ).all()
        )
        detail = m.detail
        helped = {
            key: (int(yes), int(no))
            for key, yes, no in conn.execute(
                select(detail, _count(m.action == "helped:yes"), _count(m.action == "helped:no"))
                .where(
                    *_where(filters, "event"),
                    m.action.in_(("helped:yes", "helped:no")),
                    detail.startswith("faq:", autoescape=True),
                )
                .group_by(detail)
            )
        }
        after = _handoffs_after_faq(conn, filters)
        keys = set(volume) | set(helped) | set(after)
        ids = sorted(k.removeprefix("faq:") for k in keys)
        questions = (
            {
                i: (en, zh)
                for i, en, zh in conn.execute(
                    select(_faq.c.id, _faq.c.question_en, _faq.c.question_zh).where(_faq.c.id.in_(ids))
                )
            }
            if ids
            else {}
        )
    rows = []
    for key in keys:
        entry = key.removeprefix("faq:")
        yes, no = helped.get(key, (0, 0))
        en, zh = questions.get(entry, (None, None))
        rows.append(
            {
                "entry": entry,
                "question_en": en,
                "question_zh": zh,
                "volume": int(volume.get(key, 0)),
                "helped_yes": yes,
                "helped_no": no,
                "handoffs_after": after.get(key, 0),
            }
        )
    rows.sort(key=lambda r: (-r["volume"], r["entry"]))
    return {"filters": filters.describe(), "faq": rows}


# -- CSV -------------------------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A CSV cell: None as empty; text that a spreadsheet would run as a formula is quoted with a '."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(columns)
    w.writerows([_cell(r.get(c)) for c in columns] for r in rows)
    return out.getvalue()


# The per-intent and per-entry reports: their rows' columns, for the header of an empty one.
_LISTS = {
    "intents": ["intent", "volume", "answered", "unanswered", "answer_rate", "handoffs", "helped_yes", "helped_no"],
    "faq": ["entry", "question_en", "question_zh", "volume", "helped_yes", "helped_no", "handoffs_after"],
}


def to_csv(report: Mapping[str, Any]) -> str:
    """One of the reports as CSV with a header row. Outcomes: one row per day or week (``scope`` = day or week,
    ``key`` = its first day), then ``total`` (empty key), then per ``channel`` and per ``language``; intents
    and FAQ: one row each."""
    for name, empty in _LISTS.items():
        if name in report:
            rows = report[name]
            return _table(rows, list(rows[0]) if rows else empty)
    figures = list(report["totals"])
    rows = [{"scope": report["period"], "key": r["period"], **r} for r in report["series"]]
    rows.append({"scope": "total", "key": "", **report["totals"]})
    rows += [{"scope": "channel", "key": r["channel"], **r} for r in report["by_channel"]]
    rows += [{"scope": "language", "key": r["language"], **r} for r in report["by_language"]]
    return _table(rows, ["scope", "key", *figures])
