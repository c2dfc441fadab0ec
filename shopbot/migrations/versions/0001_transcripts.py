"""Transcripts: every message of every conversation, with its NLU annotation.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcript_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(80), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("sender", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("language", sa.String(8)),
        sa.Column("intent", sa.String(80)),
        sa.Column("intent_confidence", sa.Float),
        sa.Column("sentiment", sa.String(20)),
        sa.Column("sentiment_score", sa.Float),
        sa.Column("agent", sa.String(120)),
        sa.UniqueConstraint("conversation_id", "message_id", name="uq_transcript_message"),
    )
    op.create_index("ix_transcript_conversation_ts", "transcript_messages", ["conversation_id", "ts"])


def downgrade() -> None:
    op.drop_table("transcript_messages")
