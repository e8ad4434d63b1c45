"""`memberbot greet` (CONTRACT.md command line): the same rules as `POST /api/greetings`,
one line on success, one line on stderr and a non-zero exit when refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from bot.cli import main
from models.db import transaction
from models.stores import create_or_update_assistant, upsert_store
from models.tables.outbox import OutboxMessage
from tests.factories import make_member

REPO = Path(__file__).resolve().parents[1]
PHONE = "+8613800138000"


pytestmark = pytest.mark.usefixtures("isolated_cli_env")


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    """The whole day is a sending window, so the outcome does not depend on the hour."""
    path = tmp_path / "greet.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n\n[messaging]\nsend_window = "00:00-24:00"\n'
        "weekly_cap = 50\n\n[greetings]\nper_assistant_per_hour = 2\n"
    )
    return path


@pytest.fixture
async def seeded(sessions) -> None:
    """Store S1 with assistants A1 (王丽, owns PHONE) and A2 (李娜)."""
    async with transaction(sessions) as s:
        await upsert_store(s, code="S1", name="静安店", city="上海")
        a1, _, _ = await create_or_update_assistant(s, code="A1", name="王丽", store_code="S1")
        await create_or_update_assistant(s, code="A2", name="李娜", store_code="S1")
        # Born today (the command runs on the real clock): a birthday greeting is in time.
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        await make_member(s, phone=PHONE, name="张三", assistant=a1, birthday=f"{today:%m-%d}")


def memberbot(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command as a user runs it: a separate interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *argv],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("memberbot: error: "), err
    assert "Traceback" not in err
    return lines[0]


async def outbox_rows(sessions) -> list[OutboxMessage]:
    async with transaction(sessions) as s:
        return list((await s.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


# --------------------------------------------------------------------------- a real process


async def test_greet_queues_and_prints_one_line(seeded, sessions, config, tmp_path):
    argv = ("greet", "--assistant", "A1", "--member", "13800138000", "--occasion", "birthday",
            "--note", "祝您生日快乐，天天开心")  # fmt: skip
    proc = await asyncio.to_thread(memberbot, "--config", str(config), *argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (line,) = proc.stdout.strip().splitlines()
    (row,) = await outbox_rows(sessions)
    assert (row.kind, row.status, row.channel) == ("personal_greeting", "queued", "sms")
    assert row.text.splitlines()[-2:] == ["——静安店 王丽", "回复TD退订"]
    assert "祝您生日快乐，天天开心" in row.text
    assert line == (
        f"queued greeting #{row.id} to +86138****8000: channel sms, send_after {_local(row)}"
    )
    # --config after the subcommand; the identical greeting again is the same message.
    proc = await asyncio.to_thread(memberbot, *argv, "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"already queued greeting #{row.id} ")
    assert len(await outbox_rows(sessions)) == 1


async def test_the_greeting_carries_the_command_id_and_outbox_json_shows_it(
    seeded, sessions, config, capsys
):
    argv = ("--config", str(config), "greet", "--assistant", "A1", "--member", "13800138000",
            "--occasion", "birthday")  # fmt: skip
    assert await run(*argv) == 0
    (row,) = await outbox_rows(sessions)
    assert row.request_id and row.request_id.startswith("cli-greet-")
    capsys.readouterr()
    assert await run("--config", str(config), "outbox", "--json") == 0
    (shown,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown["id"] == row.id and shown["request_id"] == row.request_id


def _local(row: OutboxMessage) -> str:
    from zoneinfo import ZoneInfo

    return row.send_after.astimezone(ZoneInfo("Asia/Shanghai")).isoformat()


async def test_refused_greeting_is_one_stderr_line_and_exit_1(seeded, sessions, config, tmp_path):
    proc = await asyncio.to_thread(
        memberbot, "greet", "--config", str(config), "--assistant", "A1", "--member", PHONE,
        "--occasion", "birthday", "--note", "生日当天全场8折", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    line = one_error_line(proc.stderr)
    assert "promotion_in_greeting" in line and "note" in line
    assert await outbox_rows(sessions) == []


# --------------------------------------------------------------------------- in process


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (("--assistant", "A2", "--member", PHONE, "--occasion", "other"), 1, "not assigned"),
        (("--assistant", "A1", "--member", PHONE, "--occasion", "xmas"), 1, "unknown_occasion"),
        (
            (
                "--assistant",
                "A1",
                "--member",
                PHONE,
                "--occasion",
                "dormant",
                "--note",
                "最近怎么没来？",
            ),
            1,
            "prying_in_dormant",
        ),  # fmt: skip
        (
            ("--assistant", "A1", "--member", PHONE, "--occasion", "wedding_anniversary"),
            1,
            "not_near_occasion",  # no wedding day on file
        ),
        (("--assistant", "A9", "--member", PHONE, "--occasion", "other"), 2, "unknown assistant"),
        (("--assistant", "A1", "--member", "13900000000", "--occasion", "other"), 2, "no member"),
        (("--assistant", "A1", "--member", "12", "--occasion", "other"), 2, "phone"),
        (("--assistant", "A1", "--member", PHONE), 2, "--occasion"),
    ],
)
async def test_refusals(seeded, sessions, config, capsys, argv, code, needle):
    assert await run("--config", str(config), "greet", *argv) == code
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.err)
    assert captured.out == ""
    assert await outbox_rows(sessions) == []


async def test_rate_limit(seeded, sessions, config, capsys):
    base = ("--config", str(config), "greet", "--assistant", "A1", "--member", PHONE)
    for note in ("一", "二"):
        assert await run(*base, "--occasion", "other", "--note", note) == 0
    capsys.readouterr()
    assert await run(*base, "--occasion", "other", "--note", "三") == 1
    assert "at most 2 greetings" in one_error_line(capsys.readouterr().err)
    assert len(await outbox_rows(sessions)) == 2


async def test_stopped_member_is_suppressed_not_refused(seeded, sessions, config, capsys):
    from models import consent
    from models.tables.members import Member
    from models.types import utcnow

    async with transaction(sessions) as s:
        member = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        await consent.stop(s, member=member, channel="staff", at=utcnow(), source="test")
    code = await run("--config", str(config), "greet", "--assistant", "A1", "--member", PHONE,
                     "--occasion", "other")  # fmt: skip
    assert code == 0
    (row,) = await outbox_rows(sessions)
    out = capsys.readouterr().out.strip()
    assert out == f"suppressed greeting #{row.id} to +86138****8000: reason stopped"
