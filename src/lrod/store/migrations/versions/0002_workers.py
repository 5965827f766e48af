"""Workers announce themselves (the console's list of live workers), and an
index on end_time for the console's recent-window counts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from lrod.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("running", sa.Integer, nullable=False),
        sa.Column("job_types", sa.JSON, nullable=False),
        sa.Column("started", UTCDateTime, nullable=False),
        sa.Column("heartbeat", UTCDateTime, nullable=False),
    )
    op.create_index("ix_workers_heartbeat", "workers", ["heartbeat"])
    # Finished operations by when they finished: a partial index, so a claim
    # or heartbeat (end_time still NULL) adds no entry; only the finish does.
    condition = sa.text("end_time IS NOT NULL")
    op.create_index(
        "ix_operations_finished",
        "operations",
        ["end_time"],
        sqlite_where=condition,
        postgresql_where=condition,
    )


def downgrade() -> None:
    op.drop_index("ix_operations_finished", "operations")
    op.drop_index("ix_workers_heartbeat", "workers")
    op.drop_table("workers")
