"""Driver errors become domain errors here, at the storage edge, so nothing
above the store imports a driver or sqlalchemy.exc."""

from __future__ import annotations

import logging
from types import TracebackType

from sqlalchemy import exc

from lrod.domain.errors import InvalidArgument, Unavailable

log = logging.getLogger("lrod.store")

_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, OSError)
# Errors in what we sent (bugs) stay errors; everything else the driver raises
# means the database cannot serve us right now.
_OUR_FAULT = (exc.IntegrityError, exc.DataError, exc.ProgrammingError, exc.NotSupportedError)


def database_unavailable() -> Unavailable:
    return Unavailable(
        "The database is unavailable; try again shortly.",
        reason="DATABASE_UNAVAILABLE",
        retry_after_seconds=1.0,
    )


def unstorable_value() -> InvalidArgument:
    """The database refused a value it cannot store. Validation refuses these
    first (lrod.domain.storable); this is the net under it, so such a request
    is answered INVALID_ARGUMENT, not retried as if the database were down."""
    return InvalidArgument("A value in the request cannot be stored.", reason="UNSTORABLE_VALUE")


def _sqlstate(error: exc.DBAPIError) -> str:
    for source in (error.orig, getattr(error.orig, "__cause__", None)):
        code = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


# SQLSTATE classes of a database that cannot serve (a lost or refused
# connection, a shutdown, no resources): everything sent now meets them.
_DOWN_CLASSES = ("08", "53", "57P")


def statement_failed(error: BaseException) -> bool:
    """Whether an UNAVAILABLE from `translated_errors` was one statement
    refused by a database that is serving (PostgreSQL: a statement or lock
    timeout, a serialization failure, a deadlock: SQLSTATE other than a
    connection or shutdown class), not the database being down. Another
    statement of the same batch may well succeed."""
    cause = error.__cause__
    if not isinstance(cause, exc.DBAPIError) or isinstance(cause, exc.InterfaceError):
        return False
    state = _sqlstate(cause)
    return bool(state) and not state.startswith(_DOWN_CLASSES)


class _Translated:
    """The context manager of `translated_errors`: stateless, so one serves
    every use (a generator-based one would be built per use, and a
    GetOperation enters one on every call)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            return
        if isinstance(error, exc.DBAPIError):
            # SQLSTATE class 22 (data exception): this value, not the database.
            if isinstance(error, exc.DataError) or _sqlstate(error).startswith("22"):
                log.warning("database refused a value: %s", error.orig)
                raise unstorable_value() from error
            if isinstance(error, _OUR_FAULT):
                return  # raised as it is
            log.warning("database unavailable: %s", error.orig)
            raise database_unavailable() from error
        if isinstance(error, OverflowError):
            # sqlite3 binding an integer wider than 64 bits.
            log.warning("database refused a value: %s", error)
            raise unstorable_value() from error
        if isinstance(error, _UNAVAILABLE):
            log.warning("database unavailable: %r", error)
            raise database_unavailable() from error


_TRANSLATED = _Translated()


def translated_errors() -> _Translated:
    """`with translated_errors():` driver errors raised inside come out as
    domain errors (a value the database refused: InvalidArgument
    UNSTORABLE_VALUE; the database unreachable: Unavailable); our own
    faults (integrity, programming) and everything else as they are."""
    return _TRANSLATED
