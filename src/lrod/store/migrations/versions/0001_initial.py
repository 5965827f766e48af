"""The initial schema: operations, their labels, attempts, and tombstones.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from lrod.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = "state IN ('QUEUED', 'RUNNING')"


def _partial(condition: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("job_type", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("input_type", sa.String(512), nullable=False),
        sa.Column("input_value", sa.LargeBinary, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("request_fingerprint", sa.String(64)),
        sa.Column("dedupe_key", sa.String(256)),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("timeout_seconds", sa.Float),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.Column("run_after", UTCDateTime, nullable=False),
        sa.Column("start_time", UTCDateTime),
        sa.Column("end_time", UTCDateTime),
        sa.Column("expire_time", UTCDateTime),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("progress_completed", sa.BigInteger, nullable=False),
        sa.Column("progress_total", sa.BigInteger, nullable=False),
        sa.Column("progress_stage", sa.String(255), nullable=False),
        sa.Column("result_type", sa.String(512)),
        sa.Column("result_value", sa.LargeBinary),
        sa.Column("error", sa.JSON),
        sa.Column("last_attempt_error", sa.JSON),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("uq_operations_request_id", "operations", ["owner", "request_id"], unique=True)
    op.create_index(
        "uq_operations_active_dedupe",
        "operations",
        ["owner", "job_type", "dedupe_key"],
        unique=True,
        **_partial(f"dedupe_key IS NOT NULL AND {ACTIVE}"),
    )
    op.create_index(
        "ix_operations_claim",
        "operations",
        [sa.text("priority DESC"), "run_after", "create_time"],
        **_partial("state = 'QUEUED'"),
    )
    op.create_index(
        "ix_operations_lease", "operations", ["lease_expires_at"], **_partial("state = 'RUNNING'")
    )
    op.create_index("ix_operations_list", "operations", ["owner", "create_time", "id"])
    op.create_index(
        "ix_operations_expire", "operations", ["expire_time"], **_partial("expire_time IS NOT NULL")
    )

    op.create_table(
        "operation_labels",
        sa.Column(
            "operation_id",
            sa.String(32),
            sa.ForeignKey("operations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.String(63), nullable=False),
    )
    op.create_index("ix_operation_labels_key_value", "operation_labels", ["key", "value"])

    op.create_table(
        "attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "operation_id",
            sa.String(32),
            sa.ForeignKey("operations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=False),
        sa.Column("start_time", UTCDateTime, nullable=False),
        sa.Column("end_time", UTCDateTime),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.JSON),
        sa.Column("internal_error", sa.Text),
    )

    op.create_index("ix_attempts_operation", "attempts", ["operation_id", "number"])

    op.create_table(
        "expired_operations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("expire_time", UTCDateTime, nullable=False),
    )
    op.create_index("ix_expired_operations_expire_time", "expired_operations", ["expire_time"])
