"""The Alembic migrations build exactly the schema the tables describe, on both engines."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models.db import migrate
from models.tables.schema import METADATA


async def test_migrated_schema_matches_the_tables(engine):
    def diff(conn):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, METADATA)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == [], f"run `python -m models.migrations.regen`: {changes}"


async def test_migrate_twice_is_a_no_op(engine):
    await migrate(engine)
    await migrate(engine)
    async with engine.connect() as conn:
        version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar()
    assert version == "0001"
