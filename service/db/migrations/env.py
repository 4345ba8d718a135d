"""Alembic environment: runs against the connection handed in by service.db.migrate."""

from alembic import context

from service.db.schema import metadata

config = context.config


def run_migrations_online() -> None:
    """Run migrations on the connection in ``config.attributes['connection']``."""
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
