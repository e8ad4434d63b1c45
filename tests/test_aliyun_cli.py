"""`memberbot sms-templates --provider aliyun` and the Aliyun part of `memberbot lint`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli import main
from models.kinds import KINDS
from scheduler.sms_review import template_sheet
from tests.conftest import API_KEY

pytestmark = pytest.mark.usefixtures("isolated_cli_env")


def write_config(tmp_path: Path, db_url: str, sms: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n\n[api]\nkeys = ["{API_KEY}"]\n\n{sms}', encoding="utf-8"
    )
    return path


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_sms_templates_prints_every_kind_and_reply_with_variables(tmp_path, db_url, capsys):
    config = write_config(tmp_path, db_url)
    assert (
        await run("sms-templates", "--provider", "aliyun", "--json", "--config", str(config)) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    keys = {r["key"] for r in rows}
    assert set(KINDS) <= keys and {"reply_points", "reply_stop_done", "holiday_2"} <= keys
    birthday = next(r for r in rows if r["key"] == "birthday")
    assert birthday["template"].startswith("${member_name}生日快乐！")
    assert birthday["template"].endswith("拒收请回复R")
    assert birthday["type"].startswith("推广短信")
    assert {"name": "member_name", "sample": "王女士，"} in birthday["variables"]
    assert birthday["code"] is None


async def test_sms_templates_as_text(tmp_path, db_url, capsys):
    config = write_config(tmp_path, db_url)
    assert await run("sms-templates", "--provider", "aliyun", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "## points_notice — 通知短信 (notification); code: (not set)" in out
    assert "回T退订" in out and "${signature}" in out


async def test_lint_reports_every_template_without_a_code(tmp_path, db_url, capsys):
    config = write_config(
        tmp_path, db_url,
        '[sms]\nprovider = "aliyun"\n\n[sms.aliyun.templates]\npoints_notice = "SMS_1"\n',
    )  # fmt: skip
    assert await run("lint", "--config", str(config)) == 1
    out = capsys.readouterr().out
    missing = {line.split(":")[0] for line in out.splitlines() if "missing_code" in line}
    keys = {f"sms.aliyun.templates.{e.shape.key}" for e in template_sheet("zh_CN")}
    assert missing == keys - {"sms.aliyun.templates.points_notice"}
    assert "English templates have no code" in out


async def test_lint_without_aliyun_ignores_sms_templates(tmp_path, db_url, capsys):
    config = write_config(tmp_path, db_url)
    assert await run("lint", "--config", str(config)) == 0
    assert "sms.aliyun" not in capsys.readouterr().out


def test_secrets_come_from_the_environment():
    from models.settings.load import load_settings

    settings = load_settings(
        None,
        environ={
            "MEMBERBOT_SMS_ALIYUN_ACCESS_KEY_ID": "LTAI-env",
            "MEMBERBOT_SMS_ALIYUN_ACCESS_KEY_SECRET": "secret-env",
            "MEMBERBOT_SMS_ALIYUN_PUSH_TOKEN": "token-env",
            "MEMBERBOT_SMS_ALIYUN_TEMPLATES": '{"points_notice": "SMS_9"}',
        },
    )
    aliyun = settings.sms.aliyun
    assert (aliyun.access_key_id, aliyun.access_key_secret) == ("LTAI-env", "secret-env")
    assert (aliyun.push_token, aliyun.templates) == ("token-env", {"points_notice": "SMS_9"})


@pytest.mark.parametrize(
    ("sms", "key"),
    [
        ('[sms.aliyun]\nendpoint = "ftp://dysmsapi.aliyuncs.com"\n', "sms.aliyun.endpoint"),
        ('[sms.aliyun.templates]\n"Points Notice" = "SMS_1"\n', "sms.aliyun.templates"),
        ("[sms.aliyun]\nvariable_max_length = 0\n", "sms.aliyun.variable_max_length"),
        ('[sms]\nprovider = "tencent"\n', "sms.provider"),
    ],
)
async def test_a_bad_aliyun_setting_names_the_key(tmp_path, db_url, capsys, sms, key):
    config = write_config(tmp_path, db_url, sms)
    assert await run("lint", "--config", str(config)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err, err
