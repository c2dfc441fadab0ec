"""Agents' corrections of shopper messages the bot misread (``shopbot/corrections.py``): one row per
message, the labels, the model's reading, the text copied for the training export, who and when.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(80), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("shopper", sa.String(200)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("language", sa.String(8)),
        sa.Column("intent", sa.String(80)),
        sa.Column("sentiment", sa.String(20)),
        sa.Column("model_intent", sa.String(80)),
        sa.Column("model_sentiment", sa.String(20)),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("conversation_id", "message_id", name="uq_correction_message"),
    )
    op.create_index("ix_corrections_created_at", "corrections", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_corrections_created_at", "corrections")
    op.drop_table("corrections")
