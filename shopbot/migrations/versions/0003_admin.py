"""Admin: channel credentials (encrypted), API tokens (hashed), the audit log.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_credentials",
        sa.Column("platform", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("settings", sa.Text, nullable=False),  # JSON: what is not secret (agent channel, origins)
        sa.Column("sealed", sa.Text, nullable=False),  # the secrets' JSON, AES-GCM sealed (admin.crypto)
        sa.Column("hints", sa.Text, nullable=False),  # JSON: secret field -> its last 4 characters
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20)),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("target", sa.String(300)),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("source", sa.String(200)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("channel_credentials")
