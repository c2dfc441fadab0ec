"""The shop's own data in SQL: orders (with items and tracking events), products, FAQ.

Tables live in ``shopbot.db.metadata`` and are created by the migrations
(``shopbot/migrations``); ``dialogue/importer.py`` fills them from CSV or JSON.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, DateTime, ForeignKey, Integer, Numeric, String, Table, Text

from shopbot.db import metadata

ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "returned", "refunded")

orders = Table(
    "orders",
    metadata,
    Column("order_number", String(40), primary_key=True),
    Column("customer_ref", String(200)),  # who may ask about it: an e-mail, a phone, a channel user id
    Column("email", String(200)),
    Column("status", String(20), nullable=False),
    Column("carrier", String(60)),
    Column("tracking_number", String(80)),
    Column("placed_at", DateTime, nullable=False),
    Column("expected_delivery", Date),
    Column("shipping_address", Text),
    Column("total", Numeric(10, 2), nullable=False),
    Column("currency", String(3), nullable=False),
)

order_items = Table(
    "order_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_number", String(40), ForeignKey("orders.order_number", ondelete="CASCADE"), nullable=False),
    Column("sku", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(10, 2), nullable=False),
)

tracking_events = Table(
    "tracking_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_number", String(40), ForeignKey("orders.order_number", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("location", String(200)),
    Column("description", Text, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("sku", String(40), primary_key=True),
    Column("name_en", String(200)),
    Column("name_zh", String(200)),
    Column("description_en", Text),
    Column("description_zh", Text),
    Column("category", String(60), nullable=False),
    Column("price", Numeric(10, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stock", Integer, nullable=False),
)

faq = Table(
    "faq",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("question_en", Text),
    Column("question_zh", Text),
    Column("answer_en", Text),
    Column("answer_zh", Text),
    Column("tags", String(200)),
    # Other ways shoppers ask the question, one phrasing per line (dialogue/knowledge.py indexes each).
    Column("also_asked_en", Text),
    Column("also_asked_zh", Text),
)
