"""The `memberbot` command line (CONTRACT.md "Command line"): a composition root.

Each command builds the settings once (`models.settings.load.load_settings`), opens the
database, brings the schema up to date and calls the domain or the web app.

    memberbot serve [--host H] [--port P] [--demo]
    memberbot import members|purchases FILE.csv
    memberbot export members [--out F]
    memberbot greet --assistant ID --member PHONE --occasion O [--note TEXT]  (bot/greet_cli.py)

`--config F` is accepted before or after the subcommand (default:
`$MEMBERBOT_CONFIG`, else `./config.toml` if present, else the embedded default).

Errors: bad input (configuration, files, CSV headers, an unreachable database)
prints exactly one line, `memberbot: error: …`, on stderr and exits 2 — never a
traceback. `import` exits 1 when some rows were rejected (the summary on stdout
names each by line). Set `MEMBERBOT_DEBUG=1` to see the traceback of an
unexpected error.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from models.settings import Settings
from models.settings.load import ConfigError, load_settings, resolve_config_path
from models.strict import ascii_int

PROG = "memberbot"
log = logging.getLogger("memberbot.cli")


class CliError(Exception):
    """A one-line error for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting, so errors stay one line."""

    def error(self, message: str):  # type: ignore[override]
        raise CliError(f"{message} (see '{PROG} --help')")


# --------------------------------------------------------------------------- parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PROG)
    except PackageNotFoundError:
        return "(not installed)"


def _port(text: str) -> int:
    port = ascii_int(text, max_digits=5)
    if port is None or port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return port


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="F",
        default=argparse.SUPPRESS,
        help="TOML config file (default: $MEMBERBOT_CONFIG, else ./config.toml if present)",
    )
    parser = _Parser(prog=PROG, parents=[common], description="WeChat / SMS member bot")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser(
        "serve", parents=[common], help="webhook server + operator API; migrates on start"
    )
    serve.add_argument("--host", help="listen address (default: server.host)")
    serve.add_argument("--port", type=_port, help="listen port (default: server.port; 0 = any)")
    serve.add_argument(
        "--demo", action="store_true", help="seed a demo store, assistants and members"
    )
    serve.set_defaults(run=_cmd_serve)

    imp = sub.add_parser("import", parents=[common], help="bulk load a CSV file (idempotent)")
    imp.add_argument("kind", choices=("members", "purchases"))
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument(
        "--batch-size", type=int, default=500, help="records per transaction (default 500)"
    )
    imp.set_defaults(run=_cmd_import)

    exp = sub.add_parser("export", parents=[common], help="the member sheet as CSV")
    exp.add_argument("kind", choices=("members",))
    exp.add_argument("--out", metavar="F", help="output file (default: standard output)")
    exp.set_defaults(run=_cmd_export)

    chat = sub.add_parser(
        "chat",
        parents=[common],
        help="talk to the bot in the terminal (same handlers as the webhooks)",
    )
    chat.add_argument("--channel", choices=("sms", "wechat"), default="sms")
    chat.add_argument(
        "--demo",
        action="store_true",
        help="seed the demo store, assistants and members first (as serve --demo; "
        "creates the database if needed)",
    )
    chat.add_argument(
        "--create",
        action="store_true",
        help="create the configured SQLite database if it does not exist (else refused)",
    )
    chat.add_argument(
        "--from",
        dest="sender",
        metavar="ID",
        help="who you are: a phone number for sms (default: the demo member "
        "+8613800138001), an openid for wechat (default: o_chat_demo)",
    )
    chat.set_defaults(run=_cmd_chat)

    from scheduler.cli_commands import add_commands

    add_commands(sub, common)

    from bot.greet_cli import add_greet_command

    add_greet_command(sub, common)
    return parser


def _cmd_chat(args: argparse.Namespace) -> int:
    from bot.chat import ChatRefused, chat_database, run_chat

    settings = _settings(args)
    if args.demo:
        from bot.demo import demo_overrides

        overrides = demo_overrides(settings)
        settings = _settings(args, overrides=overrides) if overrides else settings
    sender = args.sender or ("+8613800138001" if args.channel == "sms" else "o_chat_demo")
    _check_sqlite_file(settings)
    try:
        shown = chat_database(
            settings, channel=args.channel, sender=sender, create=args.demo or args.create
        )
    except ChatRefused as exc:
        raise CliError(str(exc)) from None
    print(f"{PROG} chat: database {shown or masked_url(settings.database.url)}", file=sys.stderr)
    try:
        return asyncio.run(run_chat(settings, channel=args.channel, sender=sender, demo=args.demo))
    except (SQLAlchemyError, OSError) as exc:
        raise _db_error(exc, settings) from None


# --------------------------------------------------------------------------- helpers


def masked_url(url: str) -> str:
    """The database URL with its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without its credentials part
        return url.split("@")[-1]


def _settings(args: argparse.Namespace, overrides: dict | None = None) -> Settings:
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    return load_settings(path, overrides=overrides)


def _db_error(exc: BaseException, settings: Settings) -> CliError:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    reason = text[0] if text else type(orig).__name__
    return CliError(f"database error ({masked_url(settings.database.url)}): {reason}")


def _check_sqlite_file(settings: Settings) -> None:
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
    from models.db import make_engine, migrate, session_factory

    _check_sqlite_file(settings)
    engine = make_engine(settings.database.url, echo=settings.database.echo)
    try:
        try:
            await migrate(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise _db_error(exc, settings) from None
        yield session_factory(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise _db_error(exc, settings) from None
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- serve

LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the server accepts them (aiohttp's default is
128). When more arrive at once — a burst of WeChat messages — the rest of the
connection attempts are dropped and retried by the sender a second later: a second
of WeChat's five gone before the bot sees the request. (Capped by the kernel's
`net.core.somaxconn`.)"""


async def start_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    demo: bool = False,
    background: bool = False,
) -> tuple[web.AppRunner, str]:
    """Build the app, migrate, optionally seed the demo, and listen. Returns (runner, url).

    `background=True` (what `memberbot serve` uses) refuses templates that break the
    message rules and starts the scheduler and the outbox sender inside the app.

    Stop with `await runner.cleanup()`. `port=0` picks a free port (the URL has the real one).
    """
    from bot.app import create_app
    from bot.appkeys import SESSIONS

    host = host if host is not None else settings.server.host
    port = port if port is not None else settings.server.port
    _check_sqlite_file(settings)
    if background:
        from scheduler.service import TemplateRuleError, check_templates

        try:
            check_templates(settings)
        except TemplateRuleError as exc:
            raise CliError(str(exc)) from None
    app = create_app(settings, background=background)
    # keepalive_timeout also bounds a request whose headers never finish arriving:
    # aiohttp closes a connection still waiting for a complete request at that time.
    runner = web.AppRunner(
        app, handle_signals=False, keepalive_timeout=settings.server.idle_timeout
    )
    try:
        await runner.setup()  # runs the cleanup contexts: engine + migration
    except (SQLAlchemyError, OSError) as exc:
        await runner.cleanup()
        raise _db_error(exc, settings) from None
    try:
        if demo:
            await _seed_demo(app[SESSIONS], settings)
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        try:
            await site.start()
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound[1]}"


async def _seed_demo(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    from bot.demo import seed_demo
    from models.clock import brand_today
    from models.db import transaction

    try:
        async with transaction(sessions) as session:
            await seed_demo(session, settings=settings, today=brand_today(settings.brand.tz))
    except SQLAlchemyError as exc:
        raise _db_error(exc, settings) from None
    log.info(
        "demo data ready: store DEMO01, assistants A001/A002 (tokens demo-token-A001/-A002), "
        "members +8613800138001 to +8613800138005 (see bot/demo.py)"
    )


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    runner, url = await start_server(
        settings, host=args.host, port=args.port, demo=args.demo, background=True
    )
    print(f"{PROG} listening on {url} (database: {masked_url(settings.database.url)})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    return 0


def serve_settings(args: argparse.Namespace) -> tuple[Settings, str | None]:
    """The settings for `serve`, and a warning to print. With --demo, the demo brand name
    when none is configured, and with no api.keys configured the demo operator key (as
    overrides: the settings stay frozen)."""
    settings = _settings(args)
    if not args.demo:
        return settings, None
    from bot.demo import DEMO_API_KEY, demo_overrides

    overrides = demo_overrides(settings)
    if settings.api.keys:
        return (_settings(args, overrides=overrides) if overrides else settings), None
    settings = _settings(args, overrides={**overrides, "api": {"keys": [DEMO_API_KEY]}})
    return settings, (
        f"no api.keys configured; --demo accepts the demo operator key {DEMO_API_KEY!r} "
        "- do not expose this server"
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.logsetup import configure_logging

    configure_logging(sys.stderr)
    settings, warning = serve_settings(args)
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return asyncio.run(_serve(settings, args))


# --------------------------------------------------------------------------- import / export


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from bot import csvio
    from models.clock import brand_today

    path = Path(args.file)
    # Check the file before touching the database, so a typo fails fast.
    total = csvio.check_file(path, args.kind)
    tz = settings.brand.tz
    async with open_database(settings) as sessions:
        if args.kind == "members":
            summary = await csvio.import_members(
                sessions,
                rules=settings.loyalty,
                tz=tz,
                path=path,
                today=brand_today(tz),
                batch_size=args.batch_size,
                progress=True,
                total_rows=total,
            )
        else:
            summary = await csvio.import_purchases(
                sessions,
                rules=settings.loyalty,
                tz=tz,
                path=path,
                batch_size=args.batch_size,
                progress=True,
                total_rows=total,
            )
    for warning in summary.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for line in summary.lines():
        print(line)
    return summary.exit_code


def _cmd_import(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    return asyncio.run(_import(_settings(args), args))


async def _export(settings: Settings, out: TextIO) -> int:
    from bot import csvio

    async with open_database(settings) as sessions:
        return await csvio.export_members(sessions, out=out, tz=settings.brand.tz)


def _cmd_export(args: argparse.Namespace) -> int:
    """The sheet is UTF-8 with a BOM (Excel then reads Chinese correctly). A file is
    written under a temporary name and renamed at the end: never a half-written sheet."""
    settings = _settings(args)
    if not args.out:
        sys.stdout.flush()
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8-sig", newline="")
        try:
            asyncio.run(_export(settings, out))
        finally:
            out.flush()
            out.detach()
        return 0
    target = Path(args.out)
    tmp = target.with_name(f".{target.name}.part")
    try:
        fh = tmp.open("w", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with fh:
            count = asyncio.run(_export(settings, fh))
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"members: {count} rows written to {target}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    from bot.csvio import CsvFileError
    from bot.logsetup import configure_cli_logging

    configure_cli_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except (ConfigError, CsvFileError) as exc:
        _error(str(exc))
        return 2
    except Exception as exc:
        if os.environ.get("MEMBERBOT_DEBUG"):
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (set MEMBERBOT_DEBUG=1 for details)")
        return 2


def _error(message: str) -> None:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)


if __name__ == "__main__":
    # `python -m bot.cli`: run the importable module's `main`, so the commands that raise
    # `bot.cli.CliError` (greet, the scheduler commands) meet the same class here.
    from bot.cli import main as _main

    sys.exit(_main())
