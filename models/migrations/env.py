"""Alembic environment: run against the connection memberbot hands in (`models.db.migrate`)."""

from alembic import context

from models.tables.schema import METADATA

config = context.config
target_metadata = METADATA


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `memberbot` (models.db.migrate)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
