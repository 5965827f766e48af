"""Completion webhooks: the target on the operation, and the outbox of
deliveries (one per operation, written with its terminal state).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from lrod.store.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operations", sa.Column("notify_url", sa.String(2048)))
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "operation_id",
            sa.String(32),
            sa.ForeignKey("operations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_time", UTCDateTime),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String(64)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("end_time", UTCDateTime),
    )
    pending = sa.text("state = 'PENDING'")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_time"],
        sqlite_where=pending,
        postgresql_where=pending,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_column("operations", "notify_url")
