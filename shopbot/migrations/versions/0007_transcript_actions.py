"""Transcripts: what the bot did with each shopper message (``action``) and event rows (sender ``event``:
an episode's outcome, "did that help", a rating) with their ``detail``; analytics read these in SQL.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database from before migrations got its transcripts table from today's create_all.
    have = {c["name"] for c in inspector.get_columns("transcript_messages")}
    indexes = {i["name"] for i in inspector.get_indexes("transcript_messages")}
    with op.batch_alter_table("transcript_messages") as batch:
        if "action" not in have:
            batch.add_column(sa.Column("action", sa.String(80)))
        if "detail" not in have:
            batch.add_column(sa.Column("detail", sa.String(120)))
        if "ix_transcript_sender_ts" not in indexes:
            batch.create_index("ix_transcript_sender_ts", ["sender", "ts"])


def downgrade() -> None:
    with op.batch_alter_table("transcript_messages") as batch:
        batch.drop_index("ix_transcript_sender_ts")
        batch.drop_column("detail")
        batch.drop_column("action")
