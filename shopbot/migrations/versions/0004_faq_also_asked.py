"""FAQ: other ways shoppers ask each question, one phrasing per line, per language.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("faq") as batch:
        batch.add_column(sa.Column("also_asked_en", sa.Text))
        batch.add_column(sa.Column("also_asked_zh", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("faq") as batch:
        batch.drop_column("also_asked_zh")
        batch.drop_column("also_asked_en")
