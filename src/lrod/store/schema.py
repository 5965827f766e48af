"""Tables, in SQLAlchemy 2.x typed style. Migrations create them; this module
describes them for queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lrod.store.dialect import AUTOINCREMENT_ID, partial_index, stores_naive_datetimes

ACTIVE_STATES_SQL = "state IN ('QUEUED', 'RUNNING')"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no zone and hands back
    naive values; this is the one place that normalises them."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if stores_naive_datetimes(dialect) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# An error column: no error is SQL NULL (SQLAlchemy's JSON writes a bound
# None as the JSON text 'null' unless told otherwise, which `IS NULL` does
# not match). Rows written so, before, read back as no error all the same:
# 'null' decodes to None.
ErrorJSON = JSON(none_as_null=True)


class Base(DeclarativeBase):
    pass


class OperationRow(Base):
    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    job_type: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    input_type: Mapped[str] = mapped_column(String(512))
    input_value: Mapped[bytes] = mapped_column(LargeBinary)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    dedupe_key: Mapped[str | None] = mapped_column(String(256))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expire_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress_completed: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_total: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_stage: Mapped[str] = mapped_column(String(255), default="")
    result_type: Mapped[str | None] = mapped_column(String(512))
    result_value: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[dict[str, Any] | None] = mapped_column(ErrorJSON)
    last_attempt_error: Mapped[dict[str, Any] | None] = mapped_column(ErrorJSON)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    notify_url: Mapped[str | None] = mapped_column(String(2048))

    __table_args__ = (
        Index("uq_operations_request_id", "owner", "request_id", unique=True),
        Index(
            "uq_operations_active_dedupe",
            "owner",
            "job_type",
            "dedupe_key",
            unique=True,
            **partial_index(f"dedupe_key IS NOT NULL AND {ACTIVE_STATES_SQL}"),
        ),
        Index(
            "ix_operations_claim",
            text("priority DESC"),
            "run_after",
            "create_time",
            **partial_index("state = 'QUEUED'"),
        ),
        Index(
            "ix_operations_lease",
            "lease_expires_at",
            **partial_index("state = 'RUNNING'"),
        ),
        Index("ix_operations_list", "owner", "create_time", "id"),
        Index(
            "ix_operations_expire",
            "expire_time",
            **partial_index("expire_time IS NOT NULL"),
        ),
        Index(
            "ix_operations_finished",
            "end_time",
            **partial_index("end_time IS NOT NULL"),
        ),
    )


class LabelRow(Base):
    """Labels again, one row each, so filters on them use an index."""

    __tablename__ = "operation_labels"

    operation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(63))

    __table_args__ = (Index("ix_operation_labels_key_value", "key", "value"),)


class AttemptRow(Base):
    """Every attempt, with the internal error text for operators only."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(AUTOINCREMENT_ID, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(255))
    lease_token: Mapped[str] = mapped_column(String(64))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[dict[str, Any] | None] = mapped_column(ErrorJSON)
    internal_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_attempts_operation", "operation_id", "number"),)


class ExpiredRow(Base):
    """Tombstones of expired operations, so their names answer 'expired'
    rather than 'never existed'."""

    __tablename__ = "expired_operations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expire_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class WorkerRow(Base):
    """A worker process that announced itself: heartbeated while it runs,
    removed when it stops, and cleaned up by others once its heartbeat is stale."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)
    job_types: Mapped[list[str]] = mapped_column(JSON)
    started: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ServerKeyRow(Base):
    """Keys the servers of one database share (the page-token key): made by
    whichever process needs one first, then read by all, so a token made by
    one process is good on every other and after restarts."""

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryRow(Base):
    """The webhook outbox: one completion webhook per operation, inserted in
    the transaction that makes the operation terminal (store/endings.py),
    removed with the operation."""

    __tablename__ = "webhook_deliveries"

    operation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    webhook_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_time",
            **partial_index("state = 'PENDING'"),
        ),
    )
