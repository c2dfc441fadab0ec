"""Where the bot reads orders from: the shop's SQL tables, or the shop's own order API.

    source = order_source(settings)        # SHOPBOT_ORDER_SOURCE=sql (default) or http
    order = source.get("10023")            # an Order, or None when there is no such order

``HttpOrders`` calls a URL template (``https://shop.example/api/orders/{order_number}``)
and maps the fields of the shop's JSON onto ours with dotted paths, so a shop
can point the bot at the API it already has. Both raise ``OrderSourceError``
when the source cannot answer, so the bot can say so instead of guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import shop_data as t


class OrderSourceError(RuntimeError):
    """The order source could not answer (unreachable, an error, an answer we cannot read)."""


@dataclass(frozen=True)
class OrderItem:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class TrackingEvent:
    at: datetime
    location: str | None
    description: str


@dataclass(frozen=True)
class Order:
    order_number: str
    status: str
    placed_at: datetime
    total: Decimal
    currency: str
    customer_ref: str | None = None
    email: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    expected_delivery: date | None = None
    shipping_address: str | None = None
    items: tuple[OrderItem, ...] = ()
    tracking: tuple[TrackingEvent, ...] = ()

    def belongs_to(self, who: str | None) -> bool | None:
        """Whether ``who`` (a channel user id, an e-mail) is this order's customer; None when we cannot tell."""
        if not who or not (self.customer_ref or self.email):
            return None
        return who in {self.customer_ref, self.email}


class OrderSource(Protocol):
    def get(self, order_number: str) -> Order | None: ...


class SqlOrders:
    """Orders from the shop data tables (``python -m dialogue.import orders``)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def get(self, order_number: str) -> Order | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(t.orders).where(t.orders.c.order_number == order_number)).first()
                if row is None:
                    return None
                items = conn.execute(
                    select(t.order_items)
                    .where(t.order_items.c.order_number == order_number)
                    .order_by(t.order_items.c.id)
                ).all()
                events = conn.execute(
                    select(t.tracking_events)
                    .where(t.tracking_events.c.order_number == order_number)
                    .order_by(t.tracking_events.c.at)
                ).all()
        except Exception as exc:  # noqa: BLE001 - any database failure: the source cannot answer
            raise OrderSourceError(f"order database unavailable: {type(exc).__name__}") from None
        m = row._mapping
        return Order(
            **{k: m[k] for k in ("order_number", "status", "placed_at", "total", "currency", "customer_ref", "email",
                                 "carrier", "tracking_number", "expected_delivery", "shipping_address")},
            items=tuple(OrderItem(i.sku, i.name, i.quantity, i.unit_price) for i in items),
            tracking=tuple(TrackingEvent(e.at, e.location, e.description) for e in events),
        )  # fmt: skip


# Our field -> where it is in the shop's JSON (dotted path); the defaults fit an API
# that already uses our names.
DEFAULT_FIELDS = {
    name: name
    for name in ("order_number", "status", "placed_at", "total", "currency", "customer_ref", "email", "carrier",
                 "tracking_number", "expected_delivery", "shipping_address", "items", "tracking")
}  # fmt: skip


class HttpOrders:
    """Orders from the shop's own JSON API."""

    def __init__(
        self,
        url_template: str,
        fields: dict[str, str] | None = None,
        token: str | None = None,
        timeout_s: float = 5.0,
        status_map: dict[str, str] | None = None,
    ):
        if "{order_number}" not in url_template:
            raise ValueError("the order API URL template needs an {order_number} placeholder")
        self.url_template = url_template
        self.fields = {**DEFAULT_FIELDS, **(fields or {})}
        self.headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.timeout_s = timeout_s
        self.status_map = {k.lower(): v for k, v in (status_map or {}).items()}

    def get(self, order_number: str) -> Order | None:
        import httpx

        url = self.url_template.format(order_number=quote(order_number, safe=""))
        try:
            resp = httpx.get(url, headers=self.headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise OrderSourceError(f"order API unreachable: {type(exc).__name__}") from None
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise OrderSourceError(f"order API answered {resp.status_code}")
        try:
            return self._order(resp.json(), order_number)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise OrderSourceError(f"order API answer not understood: {exc}") from None

    def _order(self, doc: Any, order_number: str) -> Order:
        def pick(name: str, default: Any = None) -> Any:
            value: Any = doc
            for part in self.fields[name].split("."):
                if not isinstance(value, dict) or part not in value:
                    return default
                value = value[part]
            return value

        status = str(pick("status", "")).lower()
        status = self.status_map.get(status, status)
        if status not in t.ORDER_STATUSES:
            raise ValueError(f"unknown status {status!r}; map it with SHOPBOT_ORDER_API_STATUS_MAP")
        return Order(
            order_number=str(pick("order_number") or order_number),
            status=status,
            placed_at=datetime.fromisoformat(str(pick("placed_at"))),
            total=Decimal(str(pick("total", "0"))),
            currency=str(pick("currency", "")),
            customer_ref=_str(pick("customer_ref")),
            email=_str(pick("email")),
            carrier=_str(pick("carrier")),
            tracking_number=_str(pick("tracking_number")),
            expected_delivery=date.fromisoformat(str(d)[:10]) if (d := pick("expected_delivery")) else None,
            shipping_address=_str(pick("shipping_address")),
            items=tuple(
                OrderItem(str(i["sku"]), str(i["name"]), int(i["quantity"]), Decimal(str(i["unit_price"])))
                for i in pick("items") or ()
            ),
            tracking=tuple(
                sorted(
                    (
                        TrackingEvent(
                            datetime.fromisoformat(str(e["at"])), _str(e.get("location")), str(e["description"])
                        )
                        for e in pick("tracking") or ()
                    ),
                    key=lambda e: e.at,
                )
            ),
        )


def _str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def order_source(settings, engine: Engine | None = None) -> OrderSource:
    """The source the settings ask for (``SHOPBOT_ORDER_SOURCE``); the SQL one uses ``engine`` if given."""
    if settings.order_source == "http":
        if not settings.order_api_url:
            raise ValueError("SHOPBOT_ORDER_SOURCE=http needs SHOPBOT_ORDER_API_URL")
        token = settings.order_api_token.get_secret_value() if settings.order_api_token else None
        return HttpOrders(
            settings.order_api_url, settings.order_api_fields, token, settings.order_api_timeout_s,
            settings.order_api_status_map,
        )  # fmt: skip
    from shopbot.db import engine_for

    return SqlOrders(engine or engine_for(settings.database_url))
