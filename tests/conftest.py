"""Shared fixtures: a fresh database per test on the engine chosen by
MEMBERBOT_TEST_DATABASE_URL (default: a SQLite file per test; `.ci/run` also runs
the suite on PostgreSQL), settings built without reading the developer's
environment, and the app through its factory."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from models.db import make_engine, migrate, session_factory
from models.settings import Settings
from models.settings.load import load_settings

API_KEY = "test-api-key-0123456789"
PG_URL_ENV = "MEMBERBOT_TEST_DATABASE_URL"


def _test_url() -> str:
    return os.environ.get(PG_URL_ENV, "sqlite")


def is_pg() -> bool:
    return _test_url().startswith("postgresql")


async def _prepare_pg(url: str) -> None:
    import asyncpg

    base, _, dbname = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if exists:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname
            )
            await conn.execute(f'DROP DATABASE "{dbname}"')
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()


async def _migrate_file(url: str) -> None:
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def _db_template(tmp_path_factory) -> str:
    url = _test_url()
    if url.startswith("postgresql"):
        asyncio.run(_prepare_pg(url))
        return url
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate_file(f"sqlite+aiosqlite:///{path}"))
    return str(path)


@pytest.fixture
async def db_url(_db_template: str, tmp_path: Path) -> str:
    """A migrated, empty database for this test."""
    if _db_template.startswith("postgresql"):
        engine = make_engine(_db_template)
        async with engine.begin() as conn:
            rows = await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
            tables = ", ".join(f'"{r[0]}"' for r in rows)
            if tables:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()
        return _db_template
    target = tmp_path / "memberbot.db"
    shutil.copyfile(_db_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def make_settings(db_url: str):
    """Settings for a test: embedded defaults + the test database + `overrides`."""

    def build(**overrides) -> Settings:
        base = {"database": {"url": db_url}, "api": {"keys": [API_KEY]}}
        for section, values in overrides.items():
            base.setdefault(section, {}).update(values)
        return load_settings(None, environ={}, overrides=base)

    return build


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
async def engine(db_url: str):
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine):
    """An async_sessionmaker bound to the test database."""
    return session_factory(engine)


@pytest.fixture
def isolated_cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For command-line tests: no MEMBERBOT_* settings from the developer's shell (but
    the test database URL), and the working directory is a scratch directory."""
    for key in list(os.environ):
        if key.startswith("MEMBERBOT_") and key != PG_URL_ENV:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
