"""`memberbot import members|purchases` and `memberbot export members` (CONTRACT.md "CSV files").

Idempotent loads (re-running changes nothing), line-numbered rejections that never
stop the good rows, and an export that imports back as a no-op.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import func, select

from bot.cli import main
from bot.csvio import purchases as purchase_sheet
from bot.csvio.export import export_members
from bot.csvio.purchases import import_purchases
from bot.csvio.report import CsvFileError
from bot.csvio.sheet import sheet_file
from models import consent
from models.db import transaction
from models.errors import InvalidInput
from models.member_input import MemberIn
from models.members import upsert_member
from models.stores import create_or_update_assistant, upsert_store
from models.tables.ledger import PointsEntry
from models.tables.members import Member
from models.tables.purchases import Purchase, PurchaseItem
from tests.conftest import API_KEY

MEMBER_HEADER = "phone,name,gender,birthday,birthday_calendar,store,assistant"
PURCHASE_HEADER = "receipt_no,phone,store,assistant,amount,at,sku,name,category,qty,item_amount"


pytestmark = pytest.mark.usefixtures("isolated_cli_env")


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "test-config.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[api]\nkeys = ["{API_KEY}"]\n')
    return path


@pytest.fixture
async def shop(sessions) -> None:
    """Stores S1 and S2 with assistants A001 (S1) and A002 (S2)."""
    async with transaction(sessions) as session:
        await upsert_store(session, code="S1", name="南京西路店", city="上海")
        await upsert_store(session, code="S2", name="淮海路店", city="上海")
        await create_or_update_assistant(session, code="A001", name="王丽", store_code="S1")
        await create_or_update_assistant(session, code="A002", name="李娜", store_code="S2")


async def cli(config: Path, *argv: str) -> int:
    return await asyncio.to_thread(main, ["--config", str(config), *argv])


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


async def members_by_phone(sessions) -> dict[str, Member]:
    async with sessions() as session:
        return {m.phone: m for m in (await session.exec(select(Member))).all()}


async def count(sessions, model) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


MEMBERS = [
    MEMBER_HEADER,
    "13800138001,张伟,男,1988-05-20,solar,S1,A001",
    "13800138002,陈静,女,08-15,lunar,S2,A002",
    "+8613800138003,刘洋,M,,,S1,",
]


# --------------------------------------------------------------------------- members


async def test_import_members_then_reimport_changes_nothing(
    config, shop, sessions, tmp_path, capsys
):
    f = write(tmp_path / "members.csv", MEMBERS)
    assert await cli(config, "import", "members", str(f)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("members: 3 rows: 3 created, 0 updated, 0 unchanged, 0 rejected")
    first = await members_by_phone(sessions)
    assert first["+8613800138001"].name == "张伟" and first["+8613800138001"].gender == "M"
    assert (first["+8613800138002"].birthday_month, first["+8613800138002"].birthday_day) == (8, 15)
    assert first["+8613800138002"].birthday_calendar == "lunar"
    assert first["+8613800138003"].birthday_month is None

    assert await cli(config, "import", "members", str(f)) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "members: 3 rows: 0 created, 0 updated, 3 unchanged, 0 rejected"
    )
    again = await members_by_phone(sessions)
    for phone, member in first.items():
        assert again[phone].updated_at == member.updated_at
        assert again[phone].model_dump() == member.model_dump()


async def test_changed_row_is_updated_and_empty_cells_keep_values(
    config, shop, sessions, tmp_path, capsys
):
    write(tmp_path / "a.csv", MEMBERS)
    assert await cli(config, "import", "members", str(tmp_path / "a.csv")) == 0
    capsys.readouterr()
    f = write(tmp_path / "b.csv", ["phone,name,birthday", "13800138001,张大伟,", "13800138002,,"])
    assert await cli(config, "import", "members", str(f)) == 0
    assert "1 updated, 1 unchanged" in capsys.readouterr().out
    members = await members_by_phone(sessions)
    assert members["+8613800138001"].name == "张大伟"
    assert members["+8613800138001"].birthday_month == 5  # empty cell = not given
    assert members["+8613800138002"].name == "陈静"


async def test_bom_is_accepted(config, shop, sessions, tmp_path, capsys):
    f = write(tmp_path / "bom.csv", MEMBERS, encoding="utf-8-sig")
    assert f.read_bytes().startswith(b"\xef\xbb\xbf")
    assert await cli(config, "import", "members", str(f)) == 0
    assert "3 created" in capsys.readouterr().out
    assert len(await members_by_phone(sessions)) == 3


async def test_bad_member_rows_are_rejected_by_line_and_the_rest_land(
    config, shop, sessions, tmp_path, capsys
):
    f = write(
        tmp_path / "m.csv",
        [
            MEMBER_HEADER,
            "13800138001,张伟,男,1988-05-20,solar,S1,A001",
            "12345,坏号码,,,,,",
            "13800138004,赵敏,女,03-08,solar,S9,",
            "13800138005,孙丽,女,02-30,solar,S1,",
            "13800138006,周杰,男,,,S1,A002",
            "13800138007,吴芳,女,12-24,solar,S2,A002",
        ],
    )
    assert await cli(config, "import", "members", str(f)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "members: 6 rows: 2 created, 0 updated, 0 unchanged, 4 rejected"
    assert lines[1].startswith("line 3: phone: ")
    assert lines[2] == "line 4: unknown store 'S9'"
    assert lines[3].startswith("line 5: birthday: ")
    assert lines[4].startswith("line 6: ") and "assistant" in lines[4]
    assert set(await members_by_phone(sessions)) == {"+8613800138001", "+8613800138007"}


async def test_a_rejected_row_shows_all_its_errors_and_no_phone_number(
    config, shop, sessions, tmp_path, capsys
):
    f = write(
        tmp_path / "m.csv",
        ["phone,name,gender,birthday,birthday_calendar", "138****8000,张伟,X,13-40,solar"],
    )
    assert await cli(config, "import", "members", str(f)) == 1
    out = capsys.readouterr().out
    assert "138****8000" not in out and "***********" in out
    line = out.splitlines()[1]
    assert line.startswith("line 2: phone: ")
    assert "; gender: " in line and "(got 'X')" in line and "; birthday: " in line
    p = write(
        tmp_path / "p.csv",
        [PURCHASE_HEADER, "R1,138****8000,S1,A001,-5,yesterday,K1,衬衫,shirts,1,x"],
    )
    assert await cli(config, "import", "purchases", str(p)) == 1
    out = capsys.readouterr().out
    assert "138****8000" not in out
    line = out.splitlines()[1]
    assert line.startswith("line 2: phone: ")
    assert all(f"; {column}: " in line for column in ("amount", "at", "item_amount")), line


async def test_unknown_columns_are_ignored_with_a_warning(config, shop, sessions, tmp_path, capsys):
    f = write(tmp_path / "m.csv", ["phone,name,notes", "13800138001,张伟,VIP 客户"])
    assert await cli(config, "import", "members", str(f)) == 0
    captured = capsys.readouterr()
    assert "1 created" in captured.out
    assert captured.err.strip() == "memberbot: warning: ignoring unknown column(s): notes"


async def test_row_with_extra_cells_is_rejected(config, shop, sessions, tmp_path, capsys):
    f = write(tmp_path / "m.csv", ["phone,name", "13800138001,张伟,oops", "13800138002,陈静"])
    assert await cli(config, "import", "members", str(f)) == 1
    out = capsys.readouterr().out
    assert "line 2: 3 cells but the header has 2 columns" in out
    assert set(await members_by_phone(sessions)) == {"+8613800138002"}


# --------------------------------------------------------------------------- purchases

PURCHASES = [
    PURCHASE_HEADER,
    "R1,13800138001,S1,A001,1280.50,2026-03-01T14:30:00+08:00,SH-1,衬衫,shirts,2,980.50",
    "R1,13800138001,S1,A001,1280.50,2026-03-01T14:30:00+08:00,TI-1,领带,ties,1,300.00",
    "R2,13800138002,S2,A002,399,2026-03-02 10:00,DR-1,连衣裙,dresses,1,399",
    "R3,13800138001,S1,A001,100,2026-03-03T10:00:00+08:00,SO-1,袜子,socks,1,100",
]


async def test_import_purchases_groups_items_by_receipt(config, shop, sessions, tmp_path, capsys):
    f = write(tmp_path / "p.csv", PURCHASES)
    assert await cli(config, "import", "purchases", str(f)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "purchases: 4 rows, 3 receipts: 3 recorded, 0 already recorded, 0 rejected"
    ]
    async with sessions() as session:
        r1 = (await session.exec(select(Purchase).where(Purchase.receipt_no == "R1"))).one()
        items = (
            await session.exec(
                select(PurchaseItem)
                .where(PurchaseItem.purchase_id == r1.id)
                .order_by(PurchaseItem.id)
            )
        ).all()
        r2 = (await session.exec(select(Purchase).where(Purchase.receipt_no == "R2"))).one()
    assert r1.amount == Decimal("1280.50")
    assert [(i.sku, i.qty, i.amount) for i in items] == [
        ("SH-1", 2, Decimal("980.50")),
        ("TI-1", 1, Decimal("300.00")),
    ]
    # An `at` without an offset is brand-local time (Asia/Shanghai).
    assert r2.at == datetime.fromisoformat("2026-03-02T02:00:00+00:00")
    members = await members_by_phone(sessions)
    assert members["+8613800138001"].points == 1280 + 100
    assert members["+8613800138001"].cumulative_spend == Decimal("1380.50")
    assert members["+8613800138002"].points == 399


async def test_bad_purchase_rows_are_rejected_and_the_good_ones_land(
    config, shop, sessions, tmp_path, capsys
):
    f = write(
        tmp_path / "p.csv",
        [
            PURCHASE_HEADER,
            "R1,13800138001,S1,A001,500,2026-03-01T10:00:00+08:00,SH-1,衬衫,shirts,1,500",
            "R2,13800138002,S9,A001,200,2026-03-01T11:00:00+08:00,SH-2,衬衫,shirts,1,200",
            "R3,13800138003,S1,A001,abc,2026-03-01T12:00:00+08:00,SH-3,衬衫,shirts,1,abc",
            "R4,13800138004,S1,A001,300,2026-03-01T13:00:00+08:00,SH-4,衬衫,shirts,1,100",
            "R4,13800138004,S1,A001,300,2026-03-01T13:00:00+08:00,SH-5,衬衫,shirts,x,200",
            "R5,13800138005,S1,A001,150,yesterday,SH-6,衬衫,shirts,1,150",
            "R6,13800138006,S2,A002,600,2026-03-02T10:00:00+08:00,SH-7,衬衫,shirts,1,600",
        ],
    )
    assert await cli(config, "import", "purchases", str(f)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "purchases: 7 rows, 6 receipts: 2 recorded, 0 already recorded, 4 rejected"
    assert lines[1] == "line 3: unknown store 'S9'"
    assert lines[2].startswith("line 4: amount: ")
    assert lines[3].startswith("line 6: qty: ")
    assert lines[4].startswith("line 7: at: ")
    async with sessions() as session:
        receipts = set((await session.exec(select(Purchase.receipt_no))).all())
    assert receipts == {"R1", "R6"}
    members = await members_by_phone(sessions)
    assert members["+8613800138001"].points == 500
    assert members["+8613800138006"].points == 600


async def test_reimport_finds_everything_already_recorded(config, shop, sessions, tmp_path, capsys):
    f = write(tmp_path / "p.csv", PURCHASES)
    assert await cli(config, "import", "purchases", str(f)) == 0
    capsys.readouterr()
    points = {p: m.points for p, m in (await members_by_phone(sessions)).items()}
    ledger = await count(sessions, PointsEntry)
    items = await count(sessions, PurchaseItem)

    assert await cli(config, "import", "purchases", str(f)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "purchases: 4 rows, 3 receipts: 0 recorded, 3 already recorded, 0 rejected"
    ]
    assert {p: m.points for p, m in (await members_by_phone(sessions)).items()} == points
    assert await count(sessions, PointsEntry) == ledger
    assert await count(sessions, PurchaseItem) == items


async def test_continuation_rows_may_leave_purchase_cells_empty(
    config, shop, sessions, tmp_path, capsys
):
    f = write(
        tmp_path / "p.csv",
        [
            PURCHASE_HEADER,
            "R1,13800138001,S1,A001,300,2026-03-01T10:00:00+08:00,SH-1,衬衫,shirts,1,100",
            "R1,,,,,,SH-2,裤子,trousers,1,200",
        ],
    )
    assert await cli(config, "import", "purchases", str(f)) == 0
    assert "1 recorded" in capsys.readouterr().out
    assert await count(sessions, PurchaseItem) == 2


async def test_rows_of_one_receipt_must_agree(config, shop, sessions, tmp_path, capsys):
    f = write(
        tmp_path / "p.csv",
        [
            PURCHASE_HEADER,
            "R1,13800138001,S1,A001,300,2026-03-01T10:00:00+08:00,SH-1,衬衫,shirts,1,100",
            "R1,13800138002,S1,A001,300,2026-03-01T10:00:00+08:00,SH-2,裤子,trousers,1,200",
            "R2,13800138002,S1,A001,50,2026-03-01T11:00:00+08:00,SO-1,袜子,socks,1,50",
        ],
    )
    assert await cli(config, "import", "purchases", str(f)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "purchases: 3 rows, 2 receipts: 1 recorded, 0 already recorded, 1 rejected"
    assert lines[1].startswith("line 3: phone '13800138002' differs from '13800138001' on line 2")
    assert await count(sessions, Purchase) == 1


async def test_receipt_split_across_non_adjacent_rows(config, shop, sessions, tmp_path, capsys):
    rows = [
        PURCHASE_HEADER,
        "R1,13800138001,S1,A001,300,2026-03-01T10:00:00+08:00,SH-1,衬衫,shirts,1,100",
        "R2,13800138002,S1,A001,50,2026-03-01T11:00:00+08:00,SO-1,袜子,socks,1,50",
        "R1,13800138001,S1,A001,300,2026-03-01T10:00:00+08:00,SH-2,裤子,trousers,1,200",
    ]
    f = write(tmp_path / "p.csv", rows)
    assert await cli(config, "import", "purchases", str(f)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "purchases: 3 rows, 3 receipts: 2 recorded, 0 already recorded, 1 rejected"
    assert lines[1] == (
        "line 4: receipt_no 'R1' split across non-adjacent rows (first seen on line 2)"
    )
    # Once R1 is recorded, a later run reports the stray row as already recorded.
    assert await cli(config, "import", "purchases", str(f)) == 0
    assert "0 recorded, 3 already recorded, 0 rejected" in capsys.readouterr().out


async def test_purchase_by_card_number_without_phone_column(
    config, shop, sessions, tmp_path, capsys
):
    write(tmp_path / "m.csv", ["phone,name,card_no", "13800138001,张伟,VIP-0001"])
    assert await cli(config, "import", "members", str(tmp_path / "m.csv")) == 0
    header = PURCHASE_HEADER.replace("phone", "card_no")
    f = write(
        tmp_path / "p.csv",
        [
            header,
            "R1,VIP-0001,S1,A001,88,2026-03-01T10:00:00+08:00,SO-1,袜子,socks,1,88",
            "R2,VIP-9999,S1,A001,99,2026-03-01T10:00:00+08:00,SO-1,袜子,socks,1,99",
        ],
    )
    assert await cli(config, "import", "purchases", str(f)) == 1
    out = capsys.readouterr().out
    assert "line 3: unknown card number 'VIP-9999'" in out
    assert (await members_by_phone(sessions))["+8613800138001"].points == 88


@pytest.mark.parametrize("batch_size", [1, 3, 500])
@pytest.mark.parametrize("bulk_fails", [False, True])
async def test_a_purchase_failing_half_way_leaves_nothing_and_spares_its_batch(
    shop, sessions, settings, tmp_path, monkeypatch, batch_size, bulk_fails
):
    """A domain error raised after record_purchase has written must roll back that
    purchase only (savepoint), whatever the batch size: on the one-by-one path, and when
    the bulk path's transaction fails (the batch is then redone one by one)."""
    real = purchase_sheet.record_purchase

    async def flaky(session, **kwargs):
        result = await real(session, **kwargs)
        if kwargs["data"].receipt_no == "R3":
            raise InvalidInput("the till says no", "receipt_no")
        return result

    monkeypatch.setattr(purchase_sheet, "record_purchase", flaky)

    async def broken(session, **kwargs):
        await session.exec(text("SELECT 1"))
        raise RuntimeError("the bulk path breaks")

    if bulk_fails:
        monkeypatch.setattr(purchase_sheet, "record_receipts", broken)
    rows = [PURCHASE_HEADER] + [
        f"R{i},1380013800{i},S1,A001,{i}00,2026-03-01T10:0{i}:00+08:00,SO-{i},袜子,socks,1,{i}00"
        for i in range(1, 6)
    ]
    summary = await import_purchases(
        sessions,
        rules=settings.loyalty,
        tz=settings.brand.tz,
        path=write(tmp_path / "p.csv", rows),
        batch_size=batch_size,
        bulk=bulk_fails,
    )
    assert summary.counts == {"recorded": 4}
    assert [str(r) for r in summary.rejections] == ["line 4: the till says no 'R3'"]
    async with sessions() as session:
        receipts = set((await session.exec(select(Purchase.receipt_no))).all())
        ledger = (await session.exec(select(func.sum(PointsEntry.delta)))).one()
    assert receipts == {"R1", "R2", "R4", "R5"}
    assert ledger == 100 + 200 + 400 + 500
    assert "+8613800138003" not in await members_by_phone(sessions)


# --------------------------------------------------------------------------- export


async def _shop_with_history(config, sessions, tmp_path) -> None:
    write(tmp_path / "m.csv", MEMBERS)
    assert await cli(config, "import", "members", str(tmp_path / "m.csv")) == 0
    assert await cli(config, "import", "purchases", str(write(tmp_path / "p.csv", PURCHASES))) == 0
    async with transaction(sessions) as session:
        member = (await session.exec(select(Member).where(Member.phone == "+8613800138002"))).one()
        await consent.stop(
            session,
            member=member,
            channel="sms",
            at=datetime.fromisoformat("2026-03-05T12:00:00+08:00"),
            source="TD",
        )


async def test_export_writes_the_member_sheet(config, shop, sessions, tmp_path, capsys):
    await _shop_with_history(config, sessions, tmp_path)
    capsys.readouterr()
    out = tmp_path / "sheet.csv"
    assert await cli(config, "export", "members", "--out", str(out)) == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the Chinese names correctly
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(rows[0]) == (
        "phone", "name", "gender", "birthday", "birthday_calendar", "wedding_anniversary",
        "store", "assistant", "card_no", "preferred_contact", "wechat_openid", "locale",
        "join_date", "points", "tier", "cumulative_spend", "last_purchase", "stopped",
    )  # fmt: skip
    by_phone = {r["phone"]: r for r in rows}
    assert by_phone["+8613800138001"] == {
        "phone": "+8613800138001",
        "name": "张伟",
        "gender": "M",
        "birthday": "1988-05-20",
        "birthday_calendar": "solar",
        "wedding_anniversary": "",
        "store": "S1",
        "assistant": "A001",
        "card_no": "",
        "preferred_contact": "",
        "wechat_openid": "",
        "locale": "",
        "join_date": date.fromisoformat(by_phone["+8613800138001"]["join_date"]).isoformat(),
        "points": "1380",
        "tier": "points",
        "cumulative_spend": "1380.50",
        "last_purchase": "2026-03-03",
        "stopped": "false",
    }
    assert by_phone["+8613800138002"]["birthday"] == "08-15"
    assert by_phone["+8613800138002"]["birthday_calendar"] == "lunar"
    assert by_phone["+8613800138002"]["stopped"] == "true"
    assert by_phone["+8613800138003"]["last_purchase"] == ""


async def test_export_to_stdout(config, shop, sessions, tmp_path, capsys):
    await _shop_with_history(config, sessions, tmp_path)
    capsys.readouterr()
    assert await cli(config, "export", "members") == 0
    text = capsys.readouterr().out.removeprefix("\ufeff")
    assert [r["phone"] for r in csv.DictReader(io.StringIO(text))] == [
        "+8613800138001",
        "+8613800138002",
        "+8613800138003",
    ]


async def test_export_to_a_folder_that_does_not_exist_is_one_line(config, shop, tmp_path, capsys):
    out = tmp_path / "missing" / "sheet.csv"
    assert await cli(config, "export", "members", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"memberbot: error: cannot write {out}: No such file or directory"]
    assert not out.parent.exists()


def test_a_sheet_file_is_replaced_only_when_complete(tmp_path):
    """`sheet_file` (export and report): a failure half-way leaves the old file as it was
    and no temporary file; success replaces it whole, UTF-8 with a BOM."""
    target = tmp_path / "sheet.csv"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError), sheet_file(target) as fh:
        fh.write("phone\n+8613800138001\n")
        raise RuntimeError("the database went away")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.csv"]
    with sheet_file(target) as fh:
        fh.write("phone\r\n+8613800138001\r\n")
    assert target.read_bytes() == "\ufeffphone\r\n+8613800138001\r\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.csv"]


def test_a_sheet_file_that_cannot_be_renamed_is_a_csv_file_error(tmp_path):
    target = tmp_path / "sheet.csv"
    target.mkdir()  # a folder in the way: the rename fails
    with pytest.raises(CsvFileError, match=f"^cannot write {target}: "), sheet_file(target) as fh:
        fh.write("phone\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.csv"]


async def test_export_then_import_is_a_no_op(config, shop, sessions, settings, tmp_path, capsys):
    await _shop_with_history(config, sessions, tmp_path)
    async with transaction(sessions) as session:
        await upsert_member(
            session,
            rules=settings.loyalty,
            tz=settings.brand.tz,
            data=MemberIn(
                phone="13800138009",
                name="Lee",
                wedding_anniversary="2015-10-01",
                card_no="VIP-9",
                preferred_contact="19:00-21:00",
                wechat_openid="oABC123",
                locale="en",
                store="S2",
                assistant="A002",
            ),
            today=date(2026, 3, 1),
        )
    before = await members_by_phone(sessions)
    out = tmp_path / "sheet.csv"
    assert await cli(config, "export", "members", "--out", str(out)) == 0
    capsys.readouterr()
    assert await cli(config, "import", "members", str(out)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "members: 4 rows: 0 created, 0 updated, 4 unchanged, 0 rejected"
    ]
    after = await members_by_phone(sessions)
    assert {p: m.model_dump() for p, m in after.items()} == {
        p: m.model_dump() for p, m in before.items()
    }
    sheet = {r["phone"]: r for r in csv.DictReader(io.StringIO(out.read_text("utf-8-sig")))}
    assert sheet["+8613800138009"]["wechat_openid"] == "oABC123"
    assert sheet["+8613800138009"]["locale"] == "en"
    assert sheet["+8613800138009"]["wedding_anniversary"] == "2015-10-01"


async def test_export_pages_through_many_members(shop, sessions, settings):
    async with transaction(sessions) as session:
        for i in range(25):
            await upsert_member(
                session,
                rules=settings.loyalty,
                tz=settings.brand.tz,
                data=MemberIn(phone=f"138001380{i:02d}", name=f"会员{i}"),
                today=date(2026, 3, 1),
            )
    buf = io.StringIO(newline="")
    assert await export_members(sessions, out=buf, tz=settings.brand.tz, chunk=7) == 25
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["name"] for r in rows] == [f"会员{i}" for i in range(25)]


async def test_repeated_phone_in_one_file_is_still_unchanged_on_rerun(
    config, shop, sessions, tmp_path, capsys
):
    """Rows repeating a phone skip the batch pre-check and go through upsert_member,
    which must also leave an identical member (and its updated_at) alone."""
    f = write(tmp_path / "m.csv", [MEMBER_HEADER, MEMBERS[1], MEMBERS[1]])
    assert await cli(config, "import", "members", str(f)) == 0
    assert "1 created, 0 updated, 1 unchanged" in capsys.readouterr().out
    before = (await members_by_phone(sessions))["+8613800138001"]
    assert await cli(config, "import", "members", str(f)) == 0
    assert "0 created, 0 updated, 2 unchanged" in capsys.readouterr().out
    after = (await members_by_phone(sessions))["+8613800138001"]
    assert after.model_dump() == before.model_dump()


async def test_the_member_locale_is_imported(config, shop, sessions, tmp_path, capsys):
    f = write(tmp_path / "m.csv", ["phone,name,locale", "13800138001,Lee,en", "13800138002,王,"])
    assert await cli(config, "import", "members", str(f)) == 0
    members = await members_by_phone(sessions)
    assert (members["+8613800138001"].locale, members["+8613800138002"].locale) == ("en", None)
    bad = write(tmp_path / "bad.csv", ["phone,locale", "13800138003,fr"])
    assert await cli(config, "import", "members", str(bad)) == 1
    assert "line 2: locale: " in capsys.readouterr().out
