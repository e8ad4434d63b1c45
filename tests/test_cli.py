"""The command line: exit codes, one-line errors, --config placement, serve start-up, demo seed.

Every test points the CLI at the test database through a temporary config file and
runs in a temporary working directory, so ./config.toml and ./memberbot.db are never
touched. `main()` runs in a worker thread (it calls asyncio.run itself).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import func, select

from bot.cli import build_parser, main
from bot.cli.common import CliError, masked_url
from bot.cli.serve import serve_settings, start_server
from bot.demo import DEMO_API_KEY, DEMO_MEMBERS, demo_token, seed_demo
from models.db import transaction
from models.stores import authenticate_assistant, create_or_update_assistant, upsert_store
from models.tables.members import Member
from models.tables.purchases import Purchase
from tests.conftest import API_KEY

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("isolated_cli_env")


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "test-config.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[api]\nkeys = ["{API_KEY}"]\n')
    return path


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("memberbot: error: "), err
    assert "Traceback" not in err
    return lines[0]


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------- errors


async def test_unknown_subcommand_is_one_line_exit_2(capsys):
    assert await run("frobnicate") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "frobnicate" in line


async def test_a_command_not_offered_is_one_error_line(capsys):
    # `greet` belongs to the staff issue; until then it is an unknown command.
    assert await run("greet") == 2
    one_error_line(capsys.readouterr().err)


async def test_bad_config_key_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nfoo = 1\n")
    assert await run("--config", str(bad), "export", "members") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "server.foo" in line


async def test_missing_config_file(tmp_path, capsys):
    assert await run("export", "members", "--config", str(tmp_path / "nope.toml")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "nope.toml" in line and "not found" in line


async def test_config_from_environment_variable(config, capsys, monkeypatch):
    monkeypatch.setenv("MEMBERBOT_CONFIG", str(config.parent / "missing.toml"))
    assert await run("export", "members") == 2
    assert "missing.toml" in one_error_line(capsys.readouterr().err)


async def test_missing_csv(config, tmp_path, capsys):
    assert await run("--config", str(config), "import", "members", str(tmp_path / "x.csv")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "file not found" in line and "x.csv" in line


async def test_csv_missing_required_column_is_named(config, tmp_path, capsys):
    f = write_csv(tmp_path / "p.csv", "receipt_no,store,amount,at\nR1,S1,10,2026-03-01T10:00\n")
    assert await run("--config", str(config), "import", "purchases", str(f)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "missing required column(s)" in line
    for column in ("phone", "assistant", "sku", "item_amount"):
        assert column in line


async def test_members_csv_without_phone_column(config, tmp_path, capsys):
    f = write_csv(tmp_path / "m.csv", "name,birthday\n张三,05-20\n")
    assert await run("--config", str(config), "import", "members", str(f)) == 2
    assert "phone" in one_error_line(capsys.readouterr().err)


async def test_non_utf8_csv(config, tmp_path, capsys):
    f = write_csv(tmp_path / "gbk.csv", "phone,name\n13800138000,张三\n", encoding="gbk")
    assert await run("--config", str(config), "import", "members", str(f)) == 2
    assert "not UTF-8" in one_error_line(capsys.readouterr().err)


async def test_empty_csv(config, tmp_path, capsys):
    f = write_csv(tmp_path / "empty.csv", "")
    assert await run("--config", str(config), "import", "members", str(f)) == 2
    assert "empty file" in one_error_line(capsys.readouterr().err)


async def test_unreachable_database(tmp_path, capsys):
    bad = tmp_path / "bad-db.toml"
    bad.write_text('[database]\nurl = "postgresql+asyncpg://bot:s3cret@127.0.0.1:1/nothing"\n')
    assert await run("--config", str(bad), "export", "members") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "database error" in line
    assert "s3cret" not in line and "***" in line


async def test_sqlite_file_that_cannot_be_opened(tmp_path, capsys):
    bad = tmp_path / "bad-db.toml"
    bad.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db"\n')
    assert await run("--config", str(bad), "export", "members") == 2
    assert "database error" in one_error_line(capsys.readouterr().err)


async def test_batch_size_must_be_positive(config, tmp_path, capsys):
    f = write_csv(tmp_path / "m.csv", "phone\n13800138000\n")
    argv = ("--config", str(config), "import", "members", str(f), "--batch-size", "0")
    assert await run(*argv) == 2
    one_error_line(capsys.readouterr().err)


def test_errors_reach_a_real_process_without_traceback(tmp_path):
    """Through the interpreter, as a user runs it: one line on stderr, exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    cases = [
        (["frobnicate"], "frobnicate"),
        (["--config", str(tmp_path / "nope.toml"), "import", "members", "x.csv"], "not found"),
    ]
    for argv, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", *argv],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert needle in one_error_line(proc.stderr)


async def test_bad_port_is_a_usage_error(capsys):
    assert await run("serve", "--port", "99999") == 2
    assert "port" in one_error_line(capsys.readouterr().err)


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("serve", "import", "export"):
        assert command in out


# --------------------------------------------------------------------------- --config placement


async def _seed_member(sessions, phone: str = "13800138000") -> None:
    from models.member_input import MemberIn
    from models.members import upsert_member
    from models.settings.load import load_settings

    rules = load_settings(None, environ={}).loyalty
    async with transaction(sessions) as session:
        await upsert_member(
            session,
            rules=rules,
            tz=load_settings(None, environ={}).brand.tz,
            data=MemberIn(phone=phone, name="张三"),
            today=date(2026, 3, 1),
        )


@pytest.mark.parametrize("where", ["before", "after"])
async def test_config_before_or_after_the_subcommand(where, config, sessions, capsys):
    await _seed_member(sessions)
    argv = ["export", "members"]
    argv = (
        ["--config", str(config), *argv] if where == "before" else [*argv, "--config", str(config)]
    )
    assert await run(*argv) == 0
    out = capsys.readouterr().out
    assert "+8613800138000" in out and "张三" in out


def test_parser_accepts_config_in_either_position():
    parser = build_parser()
    assert parser.parse_args(["--config", "a.toml", "export", "members"]).config == "a.toml"
    assert parser.parse_args(["export", "members", "--config", "b.toml"]).config == "b.toml"
    assert not hasattr(parser.parse_args(["export", "members"]), "config")


# --------------------------------------------------------------------------- serve


def test_masked_url_hides_the_password():
    assert masked_url("postgresql+asyncpg://bot:s3cret@db:5432/x") == (
        "postgresql+asyncpg://bot:***@db:5432/x"
    )
    assert masked_url("sqlite+aiosqlite:///memberbot.db") == "sqlite+aiosqlite:///memberbot.db"


async def test_serve_starts_answers_healthz_and_stops(make_settings):
    settings = make_settings()
    runner, url = await start_server(settings, host="127.0.0.1", port=0)
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with aiohttp.ClientSession() as client, client.get(f"{url}/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
    finally:
        await runner.cleanup()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as client, client.get(f"{url}/healthz"):
            pass


async def test_serve_reports_a_busy_port(make_settings):
    settings = make_settings()
    runner, url = await start_server(settings, host="127.0.0.1", port=0)
    try:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(CliError, match="cannot listen on 127.0.0.1"):
            await start_server(settings, host="127.0.0.1", port=port)
    finally:
        await runner.cleanup()


async def test_serve_process_prints_its_address_and_stops_on_sigterm(config):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--port", "0",
        cwd=config.parent, env={**env, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("memberbot listening on http://127.0.0.1:"), line
        assert "(database: " in line
        url = line.split()[3]
        async with aiohttp.ClientSession() as client, client.get(f"{url}/healthz") as resp:
            assert resp.status == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


def test_serve_settings_use_the_demo_key_only_without_configured_keys(tmp_path, db_url):
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[database]\nurl = "{db_url}"\n')
    args = build_parser().parse_args(["serve", "--demo", "--config", str(bare)])
    settings, warning = serve_settings(args)
    assert settings.api.keys == [DEMO_API_KEY]
    assert warning and DEMO_API_KEY in warning

    keyed = tmp_path / "keyed.toml"
    keyed.write_text(f'[database]\nurl = "{db_url}"\n[api]\nkeys = ["{API_KEY}"]\n')
    args = build_parser().parse_args(["serve", "--demo", "--config", str(keyed)])
    settings, warning = serve_settings(args)
    assert settings.api.keys == [API_KEY] and warning is None

    args = build_parser().parse_args(["serve", "--config", str(bare)])
    settings, warning = serve_settings(args)
    assert settings.api.keys == [] and warning is None


async def test_serve_demo_seeds_and_the_api_answers(make_settings):
    settings = make_settings()
    runner, url = await start_server(settings, host="127.0.0.1", port=0, demo=True)
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"{url}/api/members/+8613800138003", headers=headers) as resp,
        ):
            assert resp.status == 200
            body = await resp.json()
        assert body["tier"] == "gold" and body["points"] >= 3200
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- demo seed


async def test_demo_seed_is_idempotent_and_real(sessions, settings):
    today = date(2026, 6, 10)
    for _ in range(2):
        async with transaction(sessions) as session:
            await seed_demo(session, settings=settings, today=today)
    async with sessions() as session:
        members = {m.phone: m for m in (await session.exec(select(Member))).all()}
        purchases = (await session.exec(select(func.count()).select_from(Purchase))).one()
        assistant = await authenticate_assistant(session, token=demo_token("A001"))
    assert set(members) == {d.phone for d in DEMO_MEMBERS}
    assert purchases == sum(len(d.purchases) for d in DEMO_MEMBERS)
    gold = members["+8613800138003"]
    assert gold.tier == "gold" and gold.points >= 3200
    assert members["+8613800138005"].stopped
    assert not members["+8613800138004"].stopped
    assert members["+8613800138002"].birthday_calendar == "lunar"
    assert members["+8613800138004"].last_purchase_at is not None
    assert assistant is not None and assistant.code == "A001"


async def test_demo_seed_leaves_existing_demo_members_alone(sessions, settings):
    async with transaction(sessions) as session:
        store, _ = await upsert_store(session, code="DEMO01", name="x", city="y")
        await create_or_update_assistant(session, code="A001", name="王丽", store_code="DEMO01")
    await _seed_member(sessions, phone="+8613800138001")
    async with transaction(sessions) as session:
        await seed_demo(session, settings=settings, today=date(2026, 6, 10))
    async with sessions() as session:
        member = (await session.exec(select(Member).where(Member.phone == "+8613800138001"))).one()
    assert member.name == "张三" and member.purchases_count == 0


async def test_chat_talks_to_the_bot_through_the_same_handlers(config):
    """`memberbot chat` on the demo data: points for a demo member, help for nonsense."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--port", "0", "--demo",
        cwd=config.parent, env={**env, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = (await asyncio.wait_for(serve.stdout.readline(), 60)).decode()
        assert line.startswith("memberbot listening on"), line
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serve.communicate(), 60)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "chat", "--config", str(config),
        "--channel", "sms", "--from", "13800138001",
        cwd=config.parent, env={**env, "PYTHONPATH": str(REPO)},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate("积分\nPOINTS\n/quit\n".encode()), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert "chatting as +8613800138001 on sms" in text
    # two answers (积分 and POINTS, the second in the language it was written in),
    # each with the demo member's balance and tier
    assert text.count("当前积分：") == 1 and text.count("会员等级：") == 1, text
    assert text.count("Points: ") == 1 and text.count("Tier: ") == 1, text


async def test_chat_refuses_a_sender_that_is_no_phone(config, capsys):
    assert await run("--config", str(config), "chat", "--channel", "sms", "--from", "abc") == 2
    one_error_line(capsys.readouterr().err)
