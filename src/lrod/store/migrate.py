"""Schema migrations with Alembic, run at start or by `lrod db upgrade`."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from lrod.settings import ConfigurationError
from lrod.store.dialect import lock_for_migration, migration_engine, sync_url, url_problem


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
    engine = migration_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            lock_for_migration(connection)
            before = MigrationContext.configure(connection).get_current_revision()
            config = Config()
            config.set_main_option("script_location", "lrod.store:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = MigrationContext.configure(connection).get_current_revision()
            return before, after
    finally:
        engine.dispose()
