"""Statements compiled once, for the readers that run them on the driver
directly (engine.InlineReader on SQLite, direct_reads.AsyncpgReader on
PostgreSQL): constant SQL text, the order of its parameters, and the row
shape and column types of its result. No I/O here."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Select
from sqlalchemy.types import TypeEngine


@dataclass(frozen=True)
class PreparedRead:
    sql: str
    binds: tuple[str, ...]
    # A namedtuple class named after the selected columns (attribute access,
    # as SQLAlchemy's rows give).
    row: Any
    types: tuple[TypeEngine[Any], ...]
    # Result processors known at compile time (SQLite); PostgreSQL's depend
    # on the types the server reports and are found at the first run.
    processors: tuple[Callable[[Any], Any] | None, ...] = ()


def prepare(statement: Select[Any], dialect: Dialect) -> PreparedRead:
    compiled = statement.compile(dialect=dialect)
    columns = list(statement.selected_columns)
    return PreparedRead(
        sql=str(compiled),
        binds=tuple(compiled.positiontup or ()),
        row=namedtuple("Row", [str(c.key) for c in columns]),
        types=tuple(c.type for c in columns),
    )
