"""Driver errors become domain errors here, at the storage edge, so nothing
above the store imports a driver or sqlalchemy.exc."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc

from lrod.domain.errors import Unavailable

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


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except exc.DBAPIError as error:
        if isinstance(error, _OUR_FAULT):
            raise
        log.warning("database unavailable: %s", error.orig)
        raise database_unavailable() from error
    except _UNAVAILABLE as error:
        log.warning("database unavailable: %r", error)
        raise database_unavailable() from error
