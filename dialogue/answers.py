"""The bot's answers about an order and about products, from the texts in the policies file.

Pure formatting: the engine looks things up and passes them in. Every answer
carries ``facts``: the data it was made from, which is all an LLM may use to
rephrase it (``dialogue/llm.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from .catalog import Product, ProductHit, ProductQuery
from .orders import Order
from .policy import FaqTexts, Policy

OPEN = ("pending", "paid")  # not shipped yet: the shop can still cancel or change it
CLOSED = ("cancelled", "returned", "refunded")


@dataclass(frozen=True)
class Answer:
    text: str
    facts: tuple[str, ...] = ()
    handoff: str | None = None  # the hand-off reason, when the action needs a person
    quick_replies: tuple[str, ...] = ()
    kind: str = "order"


def day(d: date | datetime, lang: str) -> str:
    return f"{d.month}月{d.day}日" if lang == "zh" else f"{d:%a} {d.day} {d:%b}"


def moment(d: datetime, lang: str) -> str:
    return f"{day(d, lang)} {d:%H:%M}"


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:.2f} {currency}"


def _say(policy: Policy, lang: str, faq: FaqTexts | None = None):
    """``say(name, **values)``: a text of the policies file in ``lang``, quoting the shop's FAQ answers."""
    return lambda name, **values: policy.message(name, lang, faq=faq if faq is not None else FaqTexts(), **values)


def _tracking(policy: Policy, lang: str, order: Order, verified: bool) -> str:
    """ " (tracking number ...)" for the order's owner; nothing for anyone else."""
    if not (verified and order.tracking_number):
        return ""
    return policy.message("tracking_clause", lang, tracking_number=order.tracking_number)


def order_facts(order: Order, verified: bool) -> tuple[str, ...]:
    """The order as plain statements (what an LLM may say about it)."""
    facts = [
        f"order number: {order.order_number}",
        f"status: {order.status}",
        f"total: {money(order.total, order.currency)}",
    ]
    if order.carrier:
        facts.append(f"carrier: {order.carrier}")
    if verified and order.tracking_number:
        facts.append(f"tracking number: {order.tracking_number}")
    if order.expected_delivery:
        facts.append(f"expected delivery: {order.expected_delivery.isoformat()}")
    if order.tracking:
        e = order.tracking[-1]
        facts.append(
            f"latest tracking event: {e.at.isoformat(' ', 'minutes')} {e.location or ''} {e.description}".strip()
        )
    if verified:
        facts += [f"item: {i.quantity} x {i.name}" for i in order.items]
    return tuple(facts)


def status_text(policy: Policy, lang: str, order: Order, verified: bool, faq: FaqTexts | None = None) -> str:
    """Where the order is, in the shopper's language: the answer to "where is my order"."""
    m = _say(policy, lang, faq)
    number = order.order_number
    expected = m("expected_by", date=day(order.expected_delivery, lang)) if order.expected_delivery else ""
    tracking = _tracking(policy, lang, order, verified)
    last = ""
    if order.tracking:
        e = order.tracking[-1]
        where = e.location or ""
        last = m("last_event", description=e.description, where=where, at=(" " if where else "") + moment(e.at, lang))
    delivered_on = order.tracking[-1].at if order.tracking else order.expected_delivery
    return m(
        f"status_{order.status}",
        order_number=number,
        expected=expected,
        tracking=tracking,
        carrier=order.carrier or "",
        by_carrier=m("by_carrier", carrier=order.carrier) if order.carrier else "",
        last_event=last,
        date=day(delivered_on, lang) if delivered_on else "",
        total=money(order.total, order.currency),
    ).strip()


def for_order(
    policy: Policy,
    lang: str,
    intent: str,
    order: Order,
    verified: bool,
    negative: bool,
    faq: FaqTexts | None = None,
    says_missing: bool = False,
    angry: bool = False,
) -> Answer:
    """The answer to an order intent, from the order's real status (and the shop's FAQ answers it quotes).
    ``says_missing``: the message says money due is not there (orders.refund_missing); ``angry``: its mood is
    at or below thresholds.angry_sentiment_score (``negative``: at or below mood.negative_score)."""
    m = _say(policy, lang, faq)
    st, number = order.status, order.order_number
    facts = order_facts(order, verified)
    status_word = policy.status_names[st][lang]
    total = money(order.total, order.currency)
    talk = policy.quick_replies(lang, "talk_to_person_quick_replies")

    def ans(text: str, handoff: str | None = None, quick: tuple[str, ...] = ()) -> Answer:
        quoted = tuple(v for v in (faq or {}).values() if v and v in text)  # the FAQ answers the text quotes
        return Answer(text, facts + quoted, handoff, quick)

    if intent in ("track_order", "delivery_period"):
        return ans(status_text(policy, lang, order, verified, faq))
    if intent == "cancel_order":
        if st in OPEN:
            return ans(m("cancel_possible", order_number=number))
        if st == "shipped":
            return ans(m("cancel_shipped", order_number=number), handoff="order_action")
        if st == "delivered":
            return ans(m("too_late", order_number=number, status=status_word))
        return ans(m("already_closed", order_number=number, status=status_word))
    if intent in ("change_order", "change_shipping_address"):
        if st in OPEN:
            return ans(m("change_by_agent", order_number=number), handoff="order_action")
        if st == "shipped" and intent == "change_shipping_address":
            tracking = _tracking(policy, lang, order, verified)
            return ans(
                m("address_shipped", order_number=number, carrier=order.carrier or "", tracking=tracking), quick=talk
            )
        return ans(m("too_late", order_number=number, status=status_word))
    if intent == "track_refund":
        if st in CLOSED:
            if st == "refunded" and (negative or says_missing):  # the refund sent is said not to be there
                return ans(m("refund_dispute", order_number=number), handoff="refund_dispute")
            if st == "cancelled":
                return ans(m("refund_cancelled", order_number=number))
            return ans(status_text(policy, lang, order, verified, faq))
        if st == "delivered":
            # Nothing sent back, so nothing refunded yet: how a refund is had, and who pays the postage.
            return ans(m("refund_none_delivered", order_number=number))
        return ans(m("refund_none", order_number=number, status=status_word))
    if intent == "get_refund":
        if st in OPEN:
            return ans(m("refund_cancel_instead", order_number=number))
        if st == "shipped":
            return ans(m("refund_after_delivery", order_number=number))
        if st == "delivered":
            # Angry ("just give me my money back NOW!!!"), or in a low mood and saying money is missing ("I never
            # got my money back"): a dispute. Only in a low mood ("the mugs aren't my style. refund?"): a return,
            # with the apology the mood brings.
            if angry or (negative and says_missing):
                return ans(m("refund_dispute", order_number=number), handoff="refund_dispute")
            return ans(m("refund_return", order_number=number, total=total))
        # A refund asked again for an order already refunded or returned: a dispute for a person.
        if st == "cancelled" and not negative:
            return ans(m("refund_cancelled", order_number=number))  # nothing to dispute: where the money goes
        return ans(m("refund_dispute", order_number=number), handoff="refund_dispute")
    return ans(status_text(policy, lang, order, verified, faq))


def _filters(policy: Policy, lang: str, q: ProductQuery) -> str:
    m = _say(policy, lang)
    if q.min_price is not None and q.max_price is not None:
        return m("price_between", low=q.min_price, high=q.max_price)
    if q.max_price is not None:
        return m("price_under", price=q.max_price)
    if q.min_price is not None:
        return m("price_over", price=q.min_price)
    return ""


def product_line(policy: Policy, lang: str, p: Product) -> str:
    stock = policy.message("in_stock" if p.stock > 0 else "out_of_stock", lang)
    return policy.message(
        "product_line", lang, name=p.name_in(lang), price=f"{p.price:.2f}", currency=p.currency, stock=stock
    )


def for_products(
    policy: Policy,
    lang: str,
    q: ProductQuery,
    hits: list[ProductHit],
    suggestions: list[Product],
    nearest: list[Product] = (),  # type: ignore[assignment]
    note: str = "",
) -> Answer:
    """Matches (or what was searched and the nearest products), a note on the currency, and suggestions."""
    lines = [policy.message("products_found", lang)] + [product_line(policy, lang, h.product) for h in hits]
    if not hits:
        filters = _filters(policy, lang, q)
        if q.subject:
            lines = [policy.message("products_none_subject", lang, subject=q.subject, filters=filters)]
        else:
            lines = [policy.message("products_none", lang, filters=filters)]
        if nearest:
            lines += [policy.message("products_nearest", lang)] + [product_line(policy, lang, p) for p in nearest]
    if note:
        lines.append(note)
    if suggestions:
        sep = "、" if lang == "zh" else ", "
        names = sep.join(f"{p.name_in(lang)} ({p.price:.2f} {p.currency})" for p in suggestions)
        lines.append(policy.message("products_from_orders", lang, names=names))
    facts = tuple(
        f"product: {p.name_in(lang)}; price {p.price:.2f} {p.currency}; {'in stock' if p.stock > 0 else 'out of stock'}"
        for p in [h.product for h in hits] + list(nearest) + suggestions
    )
    return Answer("\n".join(lines), facts, kind="products")
