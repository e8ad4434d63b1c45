"""`memberbot vouchers` (bot/cli/vouchers.py): show, use, void and list with the rules of
the API; one stdout line per voucher, one stderr line and exit 1 when refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from models.db import transaction
from models.points import post_points
from models.stores import upsert_store
from models.tables.members import Member
from models.tables.till import VoucherEvent
from models.types import utcnow
from models.vouchers import redeem
from tests.factories import make_member
from tests.test_greet_cli import memberbot, one_error_line, run

PHONE = "+8613800138000"
pytestmark = pytest.mark.usefixtures("isolated_cli_env")


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "till.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    return path


async def _two_vouchers(sessions, settings) -> list[str]:
    now = utcnow()
    codes = []
    async with transaction(sessions) as s:
        await upsert_store(s, code="S1", name="静安店", city="上海")
        m = await make_member(s, phone=PHONE, name="张三")
        await post_points(
            s,
            rules=settings.points,
            member_id=m.id,
            delta=6500,
            reason="adjustment",
            key="seed",
            at=now,
            local_date=now.date(),
        )
        for key in ("a", "b"):
            v, _ = await redeem(s, rules=settings.loyalty, tz=settings.brand.tz, member_id=m.id,
                                reward_code="v300", key=key, now=now)  # fmt: skip
            codes.append(v.code)
    return codes


async def test_show_use_void_and_list(sessions, settings, config, tmp_path, capsys):
    first, second = await _two_vouchers(sessions, settings)
    cfg = ("--config", str(config))
    assert await run("vouchers", "show", first.lower(), *cfg) == 0
    assert capsys.readouterr().out.startswith(f"{first} 300.00 issued expires ")
    assert await run("vouchers", "use", first, "--store", "S1", "--receipt", "R1", *cfg) == 0
    assert f"{first} 300.00 used" in capsys.readouterr().out
    assert await run("vouchers", "void", second, "--reason", "asked", "--by", "M1", *cfg) == 0
    assert f"{second} 300.00 void" in capsys.readouterr().out
    assert await run("vouchers", "list", "13800138000", *cfg) == 0
    out = capsys.readouterr().out
    assert "used" in out and "void" in out and "+86138****8000" in out
    async with transaction(sessions) as s:
        events = (await s.exec(select(VoucherEvent).order_by(VoucherEvent.id))).all()
        member = (await s.exec(select(Member))).one()
    assert [(e.action, e.actor) for e in events] == [("use", "cli"), ("void", "cli:M1")]
    assert member.points == 3500  # 6500 - 2 × 3000 + 3000 back


async def test_refused_is_one_stderr_line_exit_1_and_unknown_exit_2(
    sessions, settings, config, tmp_path
):
    first, _ = await _two_vouchers(sessions, settings)
    cfg = ("--config", str(config))
    proc = memberbot("vouchers", "use", first, "--store", "S1", *cfg, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = memberbot("vouchers", "use", first, "--store", "S1", *cfg, cwd=tmp_path)
    assert proc.returncode == 1 and "used" in one_error_line(proc.stderr)
    proc = memberbot("vouchers", "void", first, "--reason", "x", *cfg, cwd=tmp_path)
    assert proc.returncode == 1 and "used" in one_error_line(proc.stderr)
    proc = memberbot("vouchers", "show", "NOSUCHCODE", *cfg, cwd=tmp_path)
    assert proc.returncode == 2 and "no voucher" in one_error_line(proc.stderr)
