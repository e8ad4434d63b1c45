"""`memberbot plan | outbox | lint | report` (CONTRACT.md "Command line"), through
`bot.cli.main`, against the test database named in a temporary config file."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import func, select

from bot.cli import main
from models.db import transaction
from models.tables.members import Assistant, Member, Store
from models.tables.outbox import OutboxEvent, OutboxMessage, PlanRun
from scheduler.render import MESSAGES_DIR
from tests.conftest import API_KEY, PG_URL_ENV

DAY = date(2027, 12, 1)  # never the brand's today while these tests run


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No MEMBERBOT_* settings from the shell; cwd is a scratch directory."""
    for key in list(os.environ):
        if key.startswith("MEMBERBOT_") and key != PG_URL_ENV:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> str:
    path = tmp_path / "test-config.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[api]\nkeys = ["{API_KEY}"]\n')
    return str(path)


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("memberbot: error: "), err
    return lines[0]


async def seed(sessions) -> list[Member]:
    """Two members with a birthday on DAY (one stopped) and one without."""
    async with transaction(sessions) as s:
        store = Store(code="S1", name="南京西路店", city="上海")
        s.add(store)
        await s.flush()
        helper = Assistant(code="A1", name="王丽", store_id=store.id)
        s.add(helper)
        await s.flush()
        rows = [
            Member(phone="+8613800138000", name="张三", store_id=store.id, assistant_id=helper.id,
                   join_date=date(2026, 6, 20), tier="points", birthday_month=12, birthday_day=1),
            Member(phone="+8613800138001", name="李四", store_id=store.id, assistant_id=helper.id,
                   join_date=date(2026, 6, 20), tier="points", birthday_month=12, birthday_day=1,
                   stopped=True),
            Member(phone="+8613800138002", name="王五", store_id=store.id, assistant_id=helper.id,
                   join_date=date(2026, 6, 20), tier="points", birthday_month=5, birthday_day=20),
        ]  # fmt: skip
        s.add_all(rows)
        await s.flush()
        return rows


async def counts(sessions) -> tuple[int, int, int]:
    async with sessions() as s:
        return tuple(
            [(await s.exec(select(func.count()).select_from(t))).one()
             for t in (OutboxMessage, OutboxEvent, PlanRun)]
        )  # fmt: skip


# --------------------------------------------------------------------------- plan


async def test_plan_dry_run_json_prints_the_contract_shape_and_changes_nothing(
    sessions, config, capsys
):
    await seed(sessions)
    before = await counts(sessions)
    assert (
        await run("plan", "--date", DAY.isoformat(), "--dry-run", "--json", "--config", config) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert await counts(sessions) == before == (0, 0, 0)
    # the stopped member's birthday would be suppressed: not printed as queued
    assert len(lines) == 1
    line = lines[0]
    assert {"member", "channel", "kind", "text", "send_after"} <= line.keys()
    assert (line["member"], line["channel"], line["kind"]) == ("+8613800138000", "sms", "birthday")
    assert line["send_after"] == "2027-12-01T09:00:00+08:00"
    assert "王丽" in line["text"]


async def test_plan_dry_run_table_is_readable(sessions, config, capsys):
    await seed(sessions)
    assert await run("--config", config, "plan", "--date", DAY.isoformat(), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "+8613800138000" in out and "birthday" in out and "2027-12-01 09:00" in out
    assert "1 message(s) would be queued for 2027-12-01" in out


async def test_plan_saves_and_a_second_plan_queues_nothing(sessions, config, capsys):
    await seed(sessions)
    assert await run("plan", "--date", DAY.isoformat(), "--config", config) == 0
    assert capsys.readouterr().out.strip() == (
        "plan 2027-12-01: 1 queued, 1 suppressed, 0 already in the outbox"
    )
    after_first = await counts(sessions)
    assert after_first[:2] == (2, 2)
    assert await run("plan", "--date", DAY.isoformat(), "--config", config) == 0
    assert "0 queued, 0 suppressed, 2 already in the outbox" in capsys.readouterr().out
    assert await counts(sessions) == after_first
    # a dry run after the real one: everything is already queued
    assert (
        await run("plan", "--date", DAY.isoformat(), "--dry-run", "--json", "--config", config) == 0
    )
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bad", ["2027-13-01", "tomorrow", "2027/12/01"])
async def test_bad_date_is_one_line_exit_2(config, capsys, bad):
    assert await run("plan", "--date", bad, "--config", config) == 2
    assert bad in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- outbox


async def test_outbox_lists_by_status_as_json(sessions, config, capsys):
    await seed(sessions)
    assert await run("plan", "--date", DAY.isoformat(), "--config", config) == 0
    capsys.readouterr()
    assert await run("outbox", "--status", "queued", "--json", "--config", config) == 0
    queued = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(q["member"], q["kind"], q["status"], q["reason"]) for q in queued] == [
        ("+8613800138000", "birthday", "queued", None)
    ]
    assert queued[0]["send_after"] == "2027-12-01T09:00:00+08:00"
    assert await run("outbox", "--json", "--config", config) == 0
    every = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted((m["member"], m["status"], m["reason"]) for m in every) == [
        ("+8613800138000", "queued", None),
        ("+8613800138001", "suppressed", "stopped"),
    ]
    assert await run("outbox", "--config", config) == 0
    out = capsys.readouterr().out
    assert "suppressed" in out and "stopped" in out and out.strip().endswith("2 message(s)")


async def test_outbox_unknown_status_is_one_line_exit_2(config, capsys):
    assert await run("outbox", "--status", "lost", "--config", config) == 2
    assert "unknown status 'lost'" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- lint


async def test_lint_built_in_templates_are_clean(config, capsys):
    assert await run("lint", "--config", config) == 0
    assert capsys.readouterr().out.strip().endswith("templates checked, no violations")


async def test_lint_reports_each_violation_and_exits_1(tmp_path, config, capsys):
    folder = tmp_path / "messages"
    shutil.copytree(MESSAGES_DIR, folder)
    bad = folder / "en" / "birthday.txt"
    bad.write_text("Big SALE today: 20% discount!\n" + bad.read_text(encoding="utf-8"), "utf-8")
    assert await run("lint", "--templates", str(folder), "--config", config) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all(line.startswith(f"{bad}: promotion_in_greeting: ") for line in lines)
    assert "violation" in captured.err


async def test_lint_missing_folder_is_one_line_exit_2(tmp_path, config, capsys):
    assert await run("lint", "--templates", str(tmp_path / "nope"), "--config", config) == 2
    one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- report


async def test_report_birthdays_writes_the_csv(sessions, tmp_path, config, capsys):
    await seed(sessions)
    out = tmp_path / "birthdays.csv"
    args = ("report", "birthdays", "--month", "2027-12", "--out", str(out), "--config", config)
    assert await run(*args) == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM, for spreadsheet programs
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["store", "member", "birthday", "calendar", "assistant", "phone", "stopped"],
        ["南京西路店", "张三", "2027-12-01", "solar", "王丽", "+86138****8000", ""],
        ["南京西路店", "李四", "2027-12-01", "solar", "王丽", "+86138****8001", "yes"],
    ]
    assert "2 rows written" in capsys.readouterr().err


async def test_report_to_a_folder_that_does_not_exist_is_one_line(config, tmp_path, capsys):
    out = tmp_path / "missing" / "birthdays.csv"
    args = ("report", "birthdays", "--month", "2027-12", "--out", str(out), "--config", config)
    assert await run(*args) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"memberbot: error: cannot write {out}: No such file or directory"
    )


async def test_report_birthdays_to_stdout(sessions, config, capsys):
    await seed(sessions)
    capsys.readouterr()
    assert await run("report", "birthdays", "--month", "2027-12", "--config", config) == 0
    out = capsys.readouterr().out
    assert out.startswith("\ufeff")  # a BOM on standard output too
    rows = list(csv.reader(out.removeprefix("\ufeff").splitlines()))
    assert [r[1] for r in rows] == ["member", "张三", "李四"]


async def test_report_bad_month_is_one_line_exit_2(config, capsys):
    assert await run("report", "birthdays", "--month", "2027-13", "--config", config) == 2
    one_error_line(capsys.readouterr().err)
