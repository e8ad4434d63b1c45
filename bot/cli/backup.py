"""`memberbot backup --out F` (CONTRACT.md "Command line"): a consistent copy of the
database, taken while `memberbot serve` keeps running.

- SQLite: the online backup API of the sqlite3 module (`Connection.backup`), which
  copies the database page by page and restarts a step when a writer changed a page
  under it, so the copy is one consistent state even while the bot writes. The copy
  goes to a temporary file beside F and is renamed to F when complete, so F is never
  a half-written database; F must not exist yet (an earlier backup is never
  overwritten by mistake).
- PostgreSQL: the documented way, `pg_dump --format=custom` (one consistent snapshot
  by design; restore with `pg_restore`, docs/operations.md), run with the password
  in the environment (`PGPASSWORD`), never on the command line where `ps` shows it.

The copy is checked before the command reports success: SQLite's
`PRAGMA integrity_check` on the copy, `pg_restore --list` on the dump.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.cli.common import CliError, cli_settings, masked_url

PAGES_PER_STEP = 1024
"""Pages copied per step of the SQLite backup; between steps the bot's writers run."""


def add_backup_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    backup = sub.add_parser(
        "backup",
        parents=[common],
        help="a consistent copy of the database (SQLite: online backup; PostgreSQL: pg_dump)",
    )
    backup.add_argument(
        "--out", metavar="F", required=True, help="the file to write (must not exist)"
    )
    backup.set_defaults(run=cmd_backup)


def cmd_backup(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    out = Path(args.out)
    if out.exists():
        raise CliError(f"{out} already exists; choose a new file for the backup")
    if not out.parent.is_dir():
        raise CliError(f"folder {out.parent} does not exist")
    url = make_url(settings.database.url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        size = _sqlite_backup(url.database, out)
    elif backend == "postgresql":
        size = _pg_dump(url, out)
    else:  # the settings refuse other engines; kept as a clear line, not a traceback
        raise CliError(f"backup of {backend} databases is not supported")
    print(f"backup of {masked_url(settings.database.url)} written to {out} ({size:,} bytes)")
    return 0


def _sqlite_backup(database: str | None, out: Path) -> int:
    if not database or database == ":memory:":
        raise CliError("an in-memory SQLite database has nothing to back up")
    source_path = Path(database)
    if not source_path.is_file():
        raise CliError(f"database file {source_path} does not exist")
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target, pages=PAGES_PER_STEP)
                verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                target.close()
        finally:
            source.close()
        if verdict != "ok":
            raise CliError(f"the copy failed its integrity check: {verdict}")
        os.replace(partial, out)
    except sqlite3.Error as exc:
        raise CliError(f"backup failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return out.stat().st_size


def _pg_dump(url, out: Path) -> int:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise CliError("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    command = [pg_dump, "--format=custom", "--no-owner", f"--file={out}"]
    for flag, value in (("--host", url.host), ("--port", url.port), ("--username", url.username)):
        if value:
            command.append(f"{flag}={value}")
    command.append(f"--dbname={url.database}")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        out.unlink(missing_ok=True)
        lines = done.stderr.strip().splitlines()
        raise CliError(f"pg_dump failed: {lines[-1] if lines else done.returncode}")
    listing = subprocess.run(["pg_restore", "--list", str(out)], capture_output=True, text=True)
    if listing.returncode != 0:
        raise CliError(f"the dump in {out} cannot be read back by pg_restore")
    return out.stat().st_size
