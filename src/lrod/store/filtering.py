"""AIP-160 filter conditions and page cursors as SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from lrod.domain.filters import Condition, Field, Filter, Op
from lrod.domain.paging import Cursor
from lrod.domain.states import TERMINAL_STATES, State
from lrod.store.schema import LabelRow, OperationRow

_T = OperationRow.__table__.c
_L = LabelRow.__table__.c
_TERMINAL = sorted(s.value for s in TERMINAL_STATES)


def filter_clauses(query: Filter) -> list[ColumnElement[bool]]:
    return [_condition(c) for c in query.conditions]


def after_cursor(cursor: Cursor, oldest_first: bool = False) -> ColumnElement[bool]:
    """Rows after `cursor` in list order: create_time DESC, id DESC (or both
    ascending, oldest first)."""
    if oldest_first:
        return or_(
            _T.create_time > cursor.create_time,
            and_(_T.create_time == cursor.create_time, _T.id > cursor.id),
        )
    return or_(
        _T.create_time < cursor.create_time,
        and_(_T.create_time == cursor.create_time, _T.id < cursor.id),
    )


def _condition(c: Condition) -> ColumnElement[bool]:
    clause = _positive(c)
    return not_(clause) if c.op is Op.NE else clause


def _positive(c: Condition) -> ColumnElement[bool]:
    if c.field is Field.DONE:
        done = _T.state.in_(_TERMINAL)
        return done if c.value is True else not_(done)
    if c.field is Field.STATE:
        assert isinstance(c.value, State)
        return _T.state == c.value.value
    if c.field is Field.JOB_TYPE:
        return _T.job_type == c.value
    if c.field is Field.LABEL:
        return exists(
            select(1).where(_L.operation_id == _T.id, _L.key == c.label_key, _L.value == c.value)
        )
    assert c.field is Field.CREATE_TIME
    assert isinstance(c.value, datetime)
    column = _T.create_time
    return {
        Op.EQ: column == c.value,
        Op.NE: column == c.value,  # negated by _condition
        Op.LT: column < c.value,
        Op.LE: column <= c.value,
        Op.GT: column > c.value,
        Op.GE: column >= c.value,
    }[c.op]
