"""What every `memberbot` command shares: the one-line error, the settings from the
command line, and the database opened, migrated and checked (CONTRACT.md "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import make_engine, migrate, session_factory
from models.settings import Settings
from models.settings.load import load_settings, resolve_config_path

PROG = "memberbot"

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


class CliError(Exception):
    """A one-line error for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def masked_url(url: str) -> str:
    """The database URL with its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without its credentials part
        return url.split("@")[-1]


def cli_settings(args: argparse.Namespace, overrides: dict | None = None) -> Settings:
    """The settings from `--config` (else $MEMBERBOT_CONFIG, else ./config.toml if present)."""
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    return load_settings(path, overrides=overrides)


def runner(func: Command) -> Callable[[argparse.Namespace], int]:
    """A command's ``run``: load the settings, then run ``func(settings, args)``."""

    def run(args: argparse.Namespace) -> int:
        return asyncio.run(func(cli_settings(args), args))

    return run


def db_error(exc: BaseException, settings: Settings) -> CliError:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    reason = text[0] if text else type(orig).__name__
    return CliError(f"database error ({masked_url(settings.database.url)}): {reason}")


def check_sqlite_file(settings: Settings) -> None:
    """Refuse a SQLite path that cannot be opened before the driver tries it (a failed
    aiosqlite connect leaves a worker thread that can print a traceback at exit)."""
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    folder = path.parent if str(path.parent) else Path(".")
    problem = None
    if path.is_dir():
        problem = f"{path} is a directory"
    elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problem = f"{path} is not readable and writable"
    elif not path.exists() and not folder.is_dir():
        problem = f"folder {folder} does not exist"
    elif not path.exists() and not os.access(folder, os.W_OK):
        problem = f"cannot create {path} (folder not writable)"
    if problem:
        raise CliError(f"database error ({masked_url(settings.database.url)}): {problem}")


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Engine + migrated schema + session factory; database failures become CliError."""
    check_sqlite_file(settings)
    engine = make_engine(
        settings.database.url,
        echo=settings.database.echo,
        pgbouncer=settings.database.pgbouncer,
    )
    try:
        try:
            await migrate(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise db_error(exc, settings) from None
        yield session_factory(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise db_error(exc, settings) from None
    finally:
        await engine.dispose()
