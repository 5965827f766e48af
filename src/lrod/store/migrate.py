"""Schema migrations with Alembic, run at start or by `lrod db upgrade`."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import make_url

from lrod.settings import ConfigurationError
from lrod.store.engine import configure_sqlite_connection, sync_url, url_problem

# Serialises concurrent upgrades on PostgreSQL (several processes starting at once).
_PG_LOCK_KEY = 0x6C726F64  # "lrod"


def upgrade(database_url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply the migrations up to `revision`; the revisions before and after.
    A database that cannot be reached or opened is a ConfigurationError."""
    problem = url_problem(database_url)
    if problem is not None:
        raise ConfigurationError(f"--database-url: {problem}")
    try:
        return _upgrade(database_url, revision)
    except (exc.OperationalError, exc.InterfaceError) as error:
        shown = make_url(database_url).render_as_string(hide_password=True)
        first = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise ConfigurationError(
            f"cannot open the database {shown}: {first}\n"
            "Check that it is running and reachable, and --database-url (LROD_DATABASE_URL)."
        ) from None


def _upgrade(database_url: str, revision: str) -> tuple[str | None, str | None]:
    url = sync_url(database_url)
    engine = create_engine(url)
    if url.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            configure_sqlite_connection(dbapi_connection)

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            if url.get_backend_name() == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            before = MigrationContext.configure(connection).get_current_revision()
            config = Config()
            config.set_main_option("script_location", "lrod.store:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = MigrationContext.configure(connection).get_current_revision()
            return before, after
    finally:
        engine.dispose()
