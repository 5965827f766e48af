"""Alembic environment: runs on the connection lrod.store.migrate hands over."""

from alembic import context

from lrod.store.dialect import batch_migrations
from lrod.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=batch_migrations(connection),
)
context.run_migrations()
