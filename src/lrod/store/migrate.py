"""Schema migrations with Alembic, run at start or by `lrod db upgrade`."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event

from lrod.store.engine import configure_sqlite_connection, sync_url

# Serialises concurrent upgrades on PostgreSQL (several processes starting at once).
_PG_LOCK_KEY = 0x6C726F64  # "lrod"


def upgrade(database_url: str, revision: str = "head") -> None:
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
            config = Config()
            config.set_main_option("script_location", "lrod.store:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
