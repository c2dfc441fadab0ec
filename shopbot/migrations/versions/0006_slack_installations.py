"""Slack workspaces connected by "Add to Slack" (OAuth): their bot tokens, sealed.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_installations",
        sa.Column("client_id", sa.String(60), primary_key=True),
        sa.Column("enterprise_id", sa.String(40), primary_key=True),  # "" outside Enterprise Grid
        sa.Column("team_id", sa.String(40), primary_key=True),  # "" for an org-wide install
        sa.Column("team_name", sa.String(200)),
        sa.Column("app_id", sa.String(40)),
        sa.Column("bot_id", sa.String(40)),
        sa.Column("bot_user_id", sa.String(40)),
        sa.Column("bot_scopes", sa.Text),
        sa.Column("installer_user_id", sa.String(40)),
        sa.Column("is_enterprise_install", sa.Boolean, nullable=False),
        sa.Column("sealed", sa.Text, nullable=False),  # the tokens' JSON, AES-GCM sealed (admin.crypto)
        sa.Column("installed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slack_installations")
