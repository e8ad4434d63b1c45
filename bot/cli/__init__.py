"""The `memberbot` command line (CONTRACT.md "Command line"): a composition root.

Each command builds the settings once (`models.settings.load.load_settings`), opens the
database, brings the schema up to date and calls the domain or the web app.

    memberbot serve [--host H] [--port P] [--demo]                     (bot/cli/serve.py)
    memberbot import members|purchases FILE.csv                         (bot/cli/data.py)
    memberbot export members [--out F]                                  (bot/cli/data.py)
    memberbot chat [--channel C] [--demo] [--create] [--from ID]        (bot/cli/chat.py)
    memberbot plan | outbox                                             (bot/cli/plan.py)
    memberbot lint | report                                             (bot/cli/report.py)
    memberbot greet --assistant ID --member PHONE --occasion O [--note TEXT]  (bot/cli/greet.py)
    memberbot backup --out F                                            (bot/cli/backup.py)
    memberbot member export|erase PHONE                                 (bot/cli/member.py)
    memberbot sms-templates --provider aliyun [--locale L] [--json]     (bot/cli/sms_templates.py)
    memberbot vouchers show|use|void CODE [--store S] [--reason T] | list PHONE
                                                                        (bot/cli/vouchers.py)

This module is the parser and the dispatch; each command runs in its own module, and
what they share (`CliError`, the settings from the command line, `open_database`) is
in `bot/cli/common.py`.

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
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from bot.cli.backup import add_backup_command
from bot.cli.common import PROG, CliError
from bot.cli.data import cmd_export, cmd_import
from bot.cli.greet import add_greet_command
from bot.cli.member import add_member_commands
from bot.cli.plan import add_commands
from bot.cli.report import add_report_commands
from bot.cli.sms_templates import add_sms_templates_command
from bot.cli.vouchers import add_vouchers_command
from bot.csvio.report import CsvFileError
from bot.logsetup import configure_cli_logging
from models.context import work_id
from models.settings.load import ConfigError
from models.strict import ascii_int


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting, so errors stay one line."""

    def error(self, message: str):  # type: ignore[override]
        raise CliError(f"{message} (see '{PROG} --help')")


# --------------------------------------------------------------------------- parser


def _version() -> str:
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
    imp.add_argument(
        "--one-by-one",
        action="store_true",
        help="record each row through the domain calls, as the API does (slower; same rows)",
    )
    imp.set_defaults(run=cmd_import)

    exp = sub.add_parser("export", parents=[common], help="the member sheet as CSV")
    exp.add_argument("kind", choices=("members",))
    exp.add_argument("--out", metavar="F", help="output file (default: standard output)")
    exp.set_defaults(run=cmd_export)

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

    add_commands(sub, common)
    add_report_commands(sub, common)
    add_greet_command(sub, common)
    add_backup_command(sub, common)
    add_member_commands(sub, common)
    add_sms_templates_command(sub, common)
    add_vouchers_command(sub, common)
    return parser


# The web app and its channels (aiohttp app, wechatpy, twilio) are imported only by the
# commands that run them: at the top they would add ~0.5 s to the start-up of every other
# command (`memberbot --help` 0.8 s → 1.3 s; see `python -X importtime -m bot.cli --help`).


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.cli.serve import cmd_serve  # start-up time, see above

    return cmd_serve(args)


def _cmd_chat(args: argparse.Namespace) -> int:
    from bot.cli.chat import cmd_chat  # start-up time, see above

    return cmd_chat(args)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    configure_cli_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "serve":  # its requests and daily runs have ids of their own
            return args.run(args)
        with work_id(f"cli-{args.command}"):  # the command's log lines and outbox rows
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
