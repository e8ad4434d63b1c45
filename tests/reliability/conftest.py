"""What the deployment tests need: PostgreSQL, haproxy and PgBouncer (skipped with the
reason when one is missing; under CI=true a missing binary fails instead), and a fresh
database of their own beside the suite's; `soak`: that deployment with the outbox
sender on and the fake provider process (tests/reliability/harness.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL_ENV, is_pg
from tests.reliability.harness import Soak, recreate_database
from tests.reliability.stack import binary

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _admin_url() -> tuple[str, str]:
    """(postgresql://…/postgres, the deployment's database name) from the test URL."""
    url = os.environ[PG_URL_ENV].replace("postgresql+asyncpg://", "postgresql://")
    base, _, dbname = url.rpartition("/")
    return base + "/postgres", dbname.split("?")[0] + "_lb"


@pytest.fixture
def deploy_db() -> Iterator[tuple[str, str]]:
    """(admin URL, name) of an empty database for a deployment; dropped afterwards."""
    if not is_pg():
        pytest.skip(f"needs PostgreSQL: set {PG_URL_ENV} (.ci/run runs it in its PostgreSQL pass)")
    missing = [name for name in ("haproxy", "pgbouncer") if binary(name) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install -y haproxy pgbouncer)"
        if IN_CI:
            pytest.fail(f"CI=true but the deployment tests cannot run: {reason}")
        pytest.skip(reason)
    admin_url, dbname = _admin_url()
    asyncio.run(recreate_database(admin_url, dbname))
    yield admin_url, dbname
    asyncio.run(recreate_database(admin_url, dbname, drop_only=True))


@pytest.fixture
async def soak(tmp_path: Path, deploy_db: tuple[str, str]) -> AsyncIterator[Soak]:
    """Two replicas behind haproxy, sending to the fake provider (`harness.Soak`)."""
    admin_url, dbname = deploy_db
    running = Soak(tmp_path, pg_admin_url=admin_url, dbname=dbname)
    try:
        await asyncio.to_thread(running.start)
        await running.open()
        yield running
    finally:
        await running.close()
        running.stop()
        print(running.tracebacks())
