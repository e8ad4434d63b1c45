"""The Alembic migrations build exactly the schema the tables describe, on both engines."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from models.db import MIGRATIONS, migrate
from models.tables.schema import METADATA


async def test_migrated_schema_matches_the_tables(engine):
    def diff(conn):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, METADATA)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == [], f"add a revision (models.migrations.revision): {changes}"


async def test_migrate_twice_is_a_no_op(engine):
    await migrate(engine)
    await migrate(engine)
    async with engine.connect() as conn:
        version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()


async def test_foreign_keys_are_enforced_again_after_migrating(engine):
    """SQLite migrates with foreign keys off (table rebuilds); they are back on after."""
    await migrate(engine)
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        bad = "INSERT INTO outbox_events (message_id, from_status, to_status, at) "
        bad += "VALUES (999999, 'planned', 'queued', '2026-01-01 00:00:00')"
        try:
            await conn.exec_driver_sql(bad)
        except Exception as exc:  # noqa: BLE001 - any integrity error of either driver
            assert "foreign" in str(exc).lower()
        else:
            raise AssertionError("an outbox event of no message was accepted")
