"""Shop data: orders with their items and tracking events, products, FAQ.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_number", sa.String(40), primary_key=True),
        sa.Column("customer_ref", sa.String(200)),
        sa.Column("email", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("carrier", sa.String(60)),
        sa.Column("tracking_number", sa.String(80)),
        sa.Column("placed_at", sa.DateTime, nullable=False),
        sa.Column("expected_delivery", sa.Date),
        sa.Column("shipping_address", sa.Text),
        sa.Column("total", sa.Numeric(10, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
    )
    op.create_index("ix_orders_customer_ref", "orders", ["customer_ref"])
    op.create_table(
        "order_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "order_number", sa.String(40), sa.ForeignKey("orders.order_number", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sku", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
    )
    op.create_index("ix_order_items_order", "order_items", ["order_number"])
    op.create_table(
        "tracking_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "order_number", sa.String(40), sa.ForeignKey("orders.order_number", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("location", sa.String(200)),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_index("ix_tracking_events_order", "tracking_events", ["order_number", "at"])
    op.create_table(
        "products",
        sa.Column("sku", sa.String(40), primary_key=True),
        sa.Column("name_en", sa.String(200)),
        sa.Column("name_zh", sa.String(200)),
        sa.Column("description_en", sa.Text),
        sa.Column("description_zh", sa.Text),
        sa.Column("category", sa.String(60), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer, nullable=False),
    )
    op.create_table(
        "faq",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("question_en", sa.Text),
        sa.Column("question_zh", sa.Text),
        sa.Column("answer_en", sa.Text),
        sa.Column("answer_zh", sa.Text),
        sa.Column("tags", sa.String(200)),
    )


def downgrade() -> None:
    for table in ("faq", "products", "tracking_events", "order_items", "orders"):
        op.drop_table(table)
