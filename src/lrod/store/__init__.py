"""Storage: one SQLAlchemy store for SQLite and PostgreSQL behind one Protocol."""

from lrod.store.protocol import ChangeListener, Claim, OperationStore

__all__ = ["ChangeListener", "Claim", "OperationStore"]
