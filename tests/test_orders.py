"""Order sources: the SQL tables, and a shop's own JSON API (a local server here) with a field mapping."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from decimal import Decimal

import pytest
from aiohttp import web
from platforms import Servers
from services import free_port

from dialogue import importer
from dialogue.orders import HttpOrders, OrderSourceError, SqlOrders, order_source
from shopbot import db
from shopbot.settings import Settings

from .conftest import ROOT


def test_sql_orders_come_whole_with_items_and_tracking_in_order(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'shop.db'}")
    importer.import_file(engine, "orders", ROOT / "dialogue" / "demo" / "orders.json")
    source = SqlOrders(engine)
    order = source.get("10021")
    assert order.status == "delivered" and order.carrier == "UPS" and order.total == Decimal("64.80")
    assert [i.sku for i in order.items] == ["HOME-MUG-01", "HOME-TEA-02"] and order.items[0].quantity == 2
    assert [e.at for e in order.tracking] == sorted(e.at for e in order.tracking) and len(order.tracking) == 3
    assert order.expected_delivery == date(2026, 11, 7)
    assert order.belongs_to("mia@example.com") is True and order.belongs_to("someone@else.com") is False
    assert source.get("99999") is None
    assert source.get("10023").belongs_to("5012347788") is True  # a Telegram user id as the customer


def test_sql_source_down_is_an_error_not_a_missing_order(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'shop.db'}")
    (tmp_path / "shop.db").unlink()
    (tmp_path / "shop.db").mkdir()  # the database file is gone and cannot be created
    engine.dispose()
    with pytest.raises(OrderSourceError):
        SqlOrders(engine).get("10021")


@pytest.fixture(scope="module")
def shop_api():
    """A shop's own order API, with its own field names and statuses."""
    seen: list[dict] = []

    async def order(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "auth": request.headers.get("Authorization")})
        number = request.match_info["number"]
        if number == "slow":
            await __import__("asyncio").sleep(3)
        if number == "broken":
            return web.Response(status=500, text="oops")
        if number == "garbled":
            return web.Response(text="<html>", content_type="text/html")
        if number != "A-77":
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(
            {
                "id": "A-77",
                "state": "IN_TRANSIT",
                "created": "2026-11-20T08:05:00",
                "amount": {"value": "45.50", "currency": "EUR"},
                "customer": {"email": "kim@example.com"},
                "shipment": {"carrier": "PostNL", "code": "3SABC123", "eta": "2026-11-25"},
                "lines": [{"sku": "S1", "name": "Serum", "quantity": 1, "unit_price": "45.50"}],
                "events": [
                    {"at": "2026-11-22T07:30:00", "location": "Utrecht", "description": "At the depot"},
                    {"at": "2026-11-20T18:00:00", "location": "Venlo", "description": "Picked up"},
                ],
            }
        )

    app = web.Application()
    app.router.add_get("/api/orders/{number}", order)
    port = free_port()
    servers = Servers({port: app}).start()
    yield f"http://127.0.0.1:{port}/api/orders/{{order_number}}", seen
    servers.stop()


FIELDS = {
    "order_number": "id", "status": "state", "placed_at": "created", "total": "amount.value",
    "currency": "amount.currency", "email": "customer.email", "carrier": "shipment.carrier",
    "tracking_number": "shipment.code", "expected_delivery": "shipment.eta", "items": "lines", "tracking": "events",
}  # fmt: skip


def test_http_orders_map_the_shops_fields(shop_api):
    url, seen = shop_api
    source = HttpOrders(url, FIELDS, token="shop-api-token", status_map={"in_transit": "shipped"})
    order = source.get("A-77")
    assert order.status == "shipped" and order.currency == "EUR" and order.total == Decimal("45.50")
    assert order.carrier == "PostNL" and order.tracking_number == "3SABC123"
    assert order.expected_delivery == date(2026, 11, 25) and order.placed_at == datetime(2026, 11, 20, 8, 5)
    assert [e.location for e in order.tracking] == ["Venlo", "Utrecht"]  # oldest first
    assert order.belongs_to("kim@example.com") is True
    assert seen[-1] == {"path": "/api/orders/A-77", "auth": "Bearer shop-api-token"}
    assert source.get("nope") is None


def test_http_order_source_failures_are_errors(shop_api):
    url, _ = shop_api
    source = HttpOrders(url, FIELDS, timeout_s=1, status_map={"in_transit": "shipped"})
    for number, reason in (("broken", "500"), ("garbled", "not understood"), ("slow", "unreachable")):
        t0 = time.monotonic()
        with pytest.raises(OrderSourceError, match=reason):
            source.get(number)
        assert time.monotonic() - t0 < 2.5
    unmapped = HttpOrders(url, FIELDS)  # IN_TRANSIT is not one of our statuses
    with pytest.raises(OrderSourceError, match="STATUS_MAP"):
        unmapped.get("A-77")
    with pytest.raises(ValueError, match="order_number"):
        HttpOrders("http://shop.example/orders")


def test_settings_choose_the_source(shop_api, monkeypatch, tmp_path):
    url, _ = shop_api
    monkeypatch.setenv("SHOPBOT_ORDER_SOURCE", "http")
    monkeypatch.setenv("SHOPBOT_ORDER_API_URL", url)
    monkeypatch.setenv("SHOPBOT_ORDER_API_FIELDS", json.dumps(FIELDS))
    monkeypatch.setenv("SHOPBOT_ORDER_API_STATUS_MAP", json.dumps({"IN_TRANSIT": "shipped"}))
    assert order_source(Settings()).get("A-77").status == "shipped"
    sql = order_source(Settings(order_source="sql", database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    assert isinstance(sql, SqlOrders) and sql.get("10021") is None
