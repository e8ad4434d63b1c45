"""`memberbot backup --out F`: a consistent copy while the bot writes, restored and read
back (docs/operations.md "Backup and restore"), and one-line errors for bad targets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from bot.cli import main
from models.db import make_engine, migrate, session_factory, transaction
from models.stores import upsert_store
from tests.conftest import is_pg

pytestmark = pytest.mark.usefixtures("isolated_cli_env")


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "backup-config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    return path


async def _backup(tmp_path: Path, url: str, out: Path) -> int:
    argv = ["--config", str(_config(tmp_path, url)), "backup", "--out", str(out)]
    return await asyncio.to_thread(main, argv)


async def _stores(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return {row[0] for row in await conn.execute(text("SELECT code FROM stores"))}
    finally:
        await engine.dispose()


async def _restore_pg(dump: Path, url: str) -> str:
    """Restore `dump` into a new database beside the test one; its URL."""
    base, _, name = url.rpartition("/")
    target = f"{name}_restored"
    conn = await asyncpg.connect(base.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{target}"')
        await conn.execute(f'CREATE DATABASE "{target}"')
    finally:
        await conn.close()
    host = base.rpartition("@")[2].split(":")
    done = await asyncio.create_subprocess_exec(
        "pg_restore", "--no-owner", f"--host={host[0]}", f"--port={host[1]}",
        "--username=postgres", f"--dbname={target}", str(dump),
    )
    assert await done.wait() == 0
    return f"{base}/{target}"


async def test_backup_while_writing_is_consistent_and_restores(db_url, tmp_path):
    writer_engine = make_engine(db_url)
    sessions = session_factory(writer_engine)
    async with transaction(sessions) as session:
        await upsert_store(session, code="S0", name="Before", city="Shanghai")

    stop = asyncio.Event()
    written: list[str] = []

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            async with transaction(sessions) as session:
                await upsert_store(session, code=f"W{n}", name="During", city="Beijing")
            written.append(f"W{n}")
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    out = tmp_path / ("backup.dump" if is_pg() else "backup.db")
    code = await _backup(tmp_path, db_url, out)
    stop.set()
    await task
    await writer_engine.dispose()
    assert code == 0 and out.is_file()
    assert not list(tmp_path.glob(".*.partial"))

    if is_pg():
        restored = await _restore_pg(out, db_url)
    else:
        copy = tmp_path / "restored.db"
        shutil.copyfile(out, copy)
        restored = f"sqlite+aiosqlite:///{copy}"
    engine = make_engine(restored)
    await migrate(engine)  # a restored copy is an ordinary database: it opens and migrates
    await engine.dispose()
    stores = await _stores(restored)
    # The copy holds the store from before and a prefix of the concurrent writes: whole
    # transactions only, never a torn one.
    assert "S0" in stores
    during = sorted((s for s in stores if s.startswith("W")), key=lambda s: int(s[1:]))
    assert during == written[: len(during)]


async def test_backup_refuses_an_existing_file(db_url, tmp_path, capsys):
    out = tmp_path / "exists.db"
    out.write_bytes(b"an earlier backup")
    code = await _backup(tmp_path, db_url, out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already exists" in err[0]
    assert out.read_bytes() == b"an earlier backup"


async def test_backup_refuses_a_missing_folder(db_url, tmp_path, capsys):
    out = tmp_path / "no-such-folder" / "b.db"
    code = await _backup(tmp_path, db_url, out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
    assert "Traceback" not in "\n".join(err)
