"""Transcripts: the shopper's platform user id on every row, so that forgetting a shopper
finds their conversations in SQL after Redis has let them go (a Slack DM is keyed by its
D... channel, a conversation in a shared channel by channel and user, a web chat by a hash).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database from before migrations got its transcripts table from today's create_all.
    have = {c["name"] for c in inspector.get_columns("transcript_messages")}
    indexes = {i["name"] for i in inspector.get_indexes("transcript_messages")}
    with op.batch_alter_table("transcript_messages") as batch:
        if "shopper" not in have:
            batch.add_column(sa.Column("shopper", sa.String(200)))
        if "ix_transcript_channel_shopper" not in indexes:
            batch.create_index("ix_transcript_channel_shopper", ["channel", "shopper"])


def downgrade() -> None:
    with op.batch_alter_table("transcript_messages") as batch:
        batch.drop_index("ix_transcript_channel_shopper")
        batch.drop_column("shopper")
