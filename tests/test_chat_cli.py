"""`memberbot chat` says which database it talks to and never makes an empty one by
surprise; the demo has a brand name of its own (issue 10, point 20)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.cli.serve import serve_settings
from bot.demo import DEMO_BRAND

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("isolated_cli_env")


async def chat(folder: Path, *argv: str, typed: str = "") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "chat", *argv,
        cwd=folder, env={**env, "PYTHONPATH": str(REPO)},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(typed.encode()), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_chat_refuses_to_create_an_empty_database_by_surprise(tmp_path):
    code, out, err = await chat(tmp_path, "--from", "13800138001", typed="积分\n")
    assert code != 0 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("memberbot: error: no database at ")
    assert str(tmp_path / "memberbot.db") in line and "--demo" in line
    assert not (tmp_path / "memberbot.db").exists()


async def test_chat_names_its_database_and_demo_seeds_it(tmp_path):
    code, out, err = await chat(tmp_path, "--demo", "--from", "13800138001", typed="积分\n")
    assert code == 0, err
    assert err.strip() == f"memberbot chat: database {tmp_path / 'memberbot.db'}"
    assert "张伟" in out and "当前积分：" in out
    # The database now exists: no flag needed; a WeChat follower meets the demo brand.
    code, out, err = await chat(tmp_path, "--demo", "--channel", "wechat", typed="/subscribe\n")
    assert code == 0, err
    assert f"欢迎关注{DEMO_BRAND}！" in out and "memberbot" not in out
    code, out, err = await chat(tmp_path, "--from", "13800138002", typed="积分\n")
    assert code == 0 and "陈静" in out


async def test_chat_create_makes_an_empty_database(tmp_path):
    code, out, err = await chat(tmp_path, "--create", "--from", "13800138001", typed="积分\n")
    assert code == 0, err
    assert (tmp_path / "memberbot.db").exists() and "还不是我们的会员" in out


def test_the_demo_brand_name_applies_only_when_none_is_configured(tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/x.db"\n')
    parse = build_parser().parse_args
    settings, _ = serve_settings(parse(["serve", "--demo", "--config", str(bare)]))
    assert settings.brand.name == DEMO_BRAND
    settings, _ = serve_settings(parse(["serve", "--config", str(bare)]))
    assert settings.brand.name == "memberbot"
    named = tmp_path / "named.toml"
    named.write_text(
        bare.read_text() + '[brand]\nname = "Acme"\n[api]\nkeys = ["' + "k" * 24 + '"]\n'
    )
    settings, warning = serve_settings(parse(["serve", "--demo", "--config", str(named)]))
    assert settings.brand.name == "Acme" and warning is None
