"""The bulk import (`models.bulk`) records exactly what the one-by-one path records.

The same member sheet and purchase sheets (several members, new phones enrolled by a
sale, a card number instead of a phone, referrals, tiers crossing gold and diamond with
card applications, birthdays and a double-points day, returns, a member in debt, rejected
rows, a receipt repeated, a re-run) go once through the one-by-one path (`bulk=False`:
`upsert_member`, `record_purchase`, `record_return` per record) and once through the bulk
path into the same emptied database; every table is then compared row for row
(`tests.table_snapshot`: ids replaced by natural keys, creation stamps left out), and
the import summaries (counts and rejection lines) must be the same.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.csvio import purchases as purchase_sheet
from bot.csvio.batches import Batcher
from bot.csvio.members import import_members
from bot.csvio.purchases import import_purchases
from models.db import is_postgres, transaction
from models.members import get_member_by_phone
from models.purchases.visits import adjust_points
from models.settings.load import load_settings
from models.stores import create_or_update_assistant, upsert_store
from tests.conftest import API_KEY
from tests.table_snapshot import snapshot, wipe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TZ = ZoneInfo("Asia/Shanghai")
HEADER = (
    "receipt_no,phone,card_no,store,assistant,amount,at,sku,name,category,qty,item_amount,"
    "referrer,return_no"
)
MEMBER_SHEET = [
    "phone,name,gender,birthday,birthday_calendar,store,assistant,card_no,wechat_openid,join_date",
    "13800000001,张伟,男,03-15,solar,S1,A001,,,",
    "13800000002,陈静,女,1990-02-10,lunar,S2,A002,,,",
    "13800000003,刘洋,M,,,S1,,,,",
    "13800000004,王芳,F,05-01,solar,S1,A001,C004,,2025-06-01",
    "13800000005,赵敏,F,,,S2,A002,,,",
    "13800000006,bad store,F,,,S9,,,,",
    "13800000007,微信,F,,,S1,A001,,wx-openid-7,",
    "13800000008,错店,F,,,S1,A002,,,",
    "13800000009,坏生日,F,02-30,solar,S1,,,,",
    "13800000011,同卡,F,,,S1,,C004,,",
    "13800000012,未来,F,,,S1,,,,2030-01-01",
]
PHONES = [f"138000000{i:02d}" for i in range(1, 6)] + ["13900000001", "13900000002"]
PRICES = (199, 899, 1299, 2999)


def _line(no, phone, at, items, *, store="S1", assistant="A001", card="", referrer="", back=""):
    amount = sum(Decimal(str(p)) * q for _sku, p, q in items)
    rows = []
    for sku, price, qty in items:
        cat = "外套" if sku.startswith("CT") else "配饰"
        rows.append(
            f"{no},{phone},{card},{store},{assistant},{amount},{at},{sku},{sku}名,{cat},{qty},"
            f"{Decimal(str(price)) * qty},{referrer},{back}"
        )
    return rows


def _sheet(seed: int, start: date, count: int, prefix: str) -> list[str]:
    """`count` receipts of the members (out of order now and then) and the special rows."""
    rnd = random.Random(seed)
    lines = [HEADER]
    for n in range(count):
        day = start + timedelta(days=rnd.randrange(150))
        at = datetime(day.year, day.month, day.day, rnd.randrange(10, 21), 5).isoformat()
        phone = rnd.choice(PHONES)
        items = [
            (rnd.choice(("CT-1", "SC-2", "BL-3")), rnd.choice(PRICES), rnd.choice((1, 1, 2)))
            for _ in range(rnd.randint(1, 3))
        ]
        store, assistant = rnd.choice((("S1", "A001"), ("S2", "A002"), ("S1", "")))
        referrer = ""
        if phone != PHONES[1] and rnd.random() < 0.15:  # the first purchase's referrer counts
            referrer = rnd.choice((PHONES[2], PHONES[5], PHONES[6]))
        card = ""
        if phone == "13800000004" and rnd.random() < 0.5:
            phone, card = "", "C004"  # by card number only
        lines += _line(
            f"{prefix}{n:03d}", phone, at, items, store=store, assistant=assistant, card=card,
            referrer=referrer,
        )  # fmt: skip
        if phone == PHONES[1] and n % 3 == 0:  # an item returned a week later
            back = (datetime.fromisoformat(at) + timedelta(days=7)).isoformat()
            lines.append(
                f"{prefix}{n:03d},,,,,,{back},{items[0][0]},,,1,{items[0][1]},,R{prefix}{n:03d}"
            )
    lines += _line(f"{prefix}DP", PHONES[0], f"{start.year}-03-08T12:00:00", [("CT-1", 899, 1)])
    lines += _line(f"{prefix}BD", PHONES[0], f"{start.year}-03-15T12:00:00", [("SC-2", 199, 1)])
    lines += _line(f"{prefix}X1", PHONES[1], "2026-04-01T10:00:00", [("CT-1", 899, 1)], store="S9")
    lines += _line(f"{prefix}X2", PHONES[1], "2026-04-01T10:00:00", [("CT-1", 899, 1)],
                   assistant="A999")  # fmt: skip
    lines.append(f"{prefix}X3,{PHONES[2]},,S1,,abc,2026-04-02T10:00:00,SC-2,围巾,配饰,1,1")
    lines += _line(f"{prefix}000", PHONES[3], "2026-04-03T10:00:00", [("SC-2", 199, 1)])
    lines += _line(f"{prefix}NEW", "13900000009", "2026-04-04T10:00:00", [("CT-1", 2999, 1)],
                   referrer="13900000010")  # fmt: skip  # referrer unknown
    lines += _line(f"{prefix}RF", "13900000010", "2026-04-05T10:00:00", [("CT-1", 2999, 1)],
                   referrer="13900000009")  # fmt: skip
    return lines


async def _seed(sessions) -> None:
    async with transaction(sessions) as session:
        await upsert_store(session, code="S1", name="南京西路店", city="上海")
        await upsert_store(session, code="S2", name="淮海路店", city="上海")
        await create_or_update_assistant(session, code="A001", name="王丽", store_code="S1")
        await create_or_update_assistant(session, code="A002", name="李娜", store_code="S2")


async def _debt(sessions, rules) -> None:
    """Member 5 owes points (a staff correction below zero): the next earnings pay the debt."""
    async with transaction(sessions) as session:
        member = await get_member_by_phone(session, phone="13800000005")
        await adjust_points(
            session, rules=rules, tz=TZ, member_id=member.id, delta=-(member.points + 500),
            key="debt", at=datetime(2026, 6, 1, tzinfo=TZ), reason="test", actor="test",
        )  # fmt: skip


async def _run(sessions, settings, files: list[Path], *, bulk: bool, batch_size: int) -> list:
    rules = settings.loyalty
    await _seed(sessions)
    out = []
    members = files[0]
    summary = await import_members(
        sessions, rules=rules, tz=TZ, path=members, today=date(2026, 1, 5), bulk=bulk,
        batch_size=batch_size,
    )  # fmt: skip
    out.append(summary.lines(limit=100))
    again = await import_members(
        sessions, rules=rules, tz=TZ, path=members, today=date(2026, 1, 6), bulk=bulk
    )
    out.append(again.lines(limit=100))
    for n, path in enumerate(files[1:] + files[1:2]):  # the first sheet again: a re-run
        if n == 1:
            await _debt(sessions, rules)
        summary = await import_purchases(
            sessions, rules=rules, tz=TZ, path=path, bulk=bulk, batch_size=batch_size
        )
        out.append(summary.lines(limit=100))
    return out


def _settings(make_settings, db_url: str, scheme: str):
    if scheme == "default":
        return make_settings(points={"double_points_days": ["03-08"]})
    return load_settings(EXAMPLES / f"{scheme}.toml", environ={}, overrides={
        "database": {"url": db_url}, "api": {"keys": [API_KEY]}})  # fmt: skip


@pytest.mark.parametrize(
    ("scheme", "batch_size"),
    [("default", 4), ("default", 500), ("scheme-b", 500), ("scheme-c", 7)],
)
async def test_bulk_import_records_what_one_by_one_records(
    make_settings, db_url, engine, sessions, tmp_path, scheme, batch_size, caplog, monkeypatch
):
    settings = _settings(make_settings, db_url, scheme)
    seen = {"records": 0, "left": 0}
    real = purchase_sheet.record_receipts

    async def counted(session, **kwargs):
        left = await real(session, **kwargs)
        seen["records"] += len(kwargs["records"])
        seen["left"] += len(left)
        return left

    monkeypatch.setattr(purchase_sheet, "record_receipts", counted)
    batchers = _watch_batchers(monkeypatch)
    files = [tmp_path / "members.csv", tmp_path / "p1.csv", tmp_path / "p2.csv"]
    files[0].write_text("\n".join(MEMBER_SHEET) + "\n", encoding="utf-8")
    files[1].write_text("\n".join(_sheet(1, date(2026, 1, 2), 60, "A")) + "\n", encoding="utf-8")
    files[2].write_text("\n".join(_sheet(2, date(2026, 5, 1), 40, "B")) + "\n", encoding="utf-8")

    one_by_one = await _run(sessions, settings, files, bulk=False, batch_size=batch_size)
    expected = await snapshot(engine)
    await wipe(engine)
    caplog.clear()
    in_bulk = await _run(sessions, settings, files, bulk=True, batch_size=batch_size)
    got = await snapshot(engine)
    redone = [r.getMessage() for r in caplog.records if "failed, redone" in r.getMessage()]
    assert not redone  # the bulk path did record (it was not the fallback's work)
    assert seen["left"] < seen["records"] / 2, seen  # most receipts were recorded in bulk
    if is_postgres(engine) and batch_size < 10:
        # two batches were in flight: members were replayed on from the batch before,
        # none of them found changed (`models.bulk.pipeline`)
        assert sum(b.carried for b in batchers) > 0
        assert sum(b.replayed_again for b in batchers) == 0

    assert in_bulk == one_by_one
    assert any("rejected" in line for lines in in_bulk for line in lines[1:]) or any(
        lines[1:] for lines in in_bulk
    )
    for table, rows in expected.items():
        missing, extra = rows - got[table], got[table] - rows
        assert not missing and not extra, f"{table}: missing {missing}, extra {extra}"
    if scheme != "default":
        return
    # the sheets did exercise what the comparison is about
    for table in ("purchases", "points_ledger", "points_lots", "tier_changes",
                  "card_applications", "card_events", "assignments", "sale_returns",
                  "identities"):  # fmt: skip
        assert sum(expected[table].values()) > 0, table
    reasons = {dict(row)["reason"] for row in expected["points_ledger"]}
    assert {"purchase", "birthday_bonus", "referral", "return", "adjustment"} <= reasons
    notes = {dict(row)["note"] for row in expected["points_ledger"]}
    assert any(n.startswith("double_points_day") for n in notes)
    statuses = {dict(row)["status"] for row in expected["card_applications"]}
    assert statuses == {"applied", "cancelled"}


async def test_a_bulk_rerun_changes_nothing_and_rejects_each_bad_row_alone(
    settings, engine, sessions, tmp_path
):
    """Through the bulk path: a re-run finds every receipt already recorded and writes
    nothing; each bad row is rejected on its own line with its reason, and the good rows
    of its batch land."""
    path = tmp_path / "p.csv"
    path.write_text("\n".join(_sheet(3, date(2026, 1, 2), 30, "C")) + "\n", encoding="utf-8")
    await _seed(sessions)
    members = tmp_path / "members.csv"
    members.write_text("\n".join(MEMBER_SHEET) + "\n", encoding="utf-8")
    await import_members(
        sessions, rules=settings.loyalty, tz=TZ, path=members, today=date(2026, 1, 5)
    )
    first = await import_purchases(
        sessions, rules=settings.loyalty, tz=TZ, path=path, batch_size=500
    )
    expected = [
        (_line_of(path, "CX1"), "unknown store 'S9'"),
        (_line_of(path, "CX2"), "unknown assistant 'A999'"),
        (_line_of(path, "CX3"), "amount: expected a decimal number written with the digits "
         "0-9 (got 'abc')"),
        (_line_of(path, "C000", last=True), f"receipt_no 'C000' split across non-adjacent "
         f"rows (first seen on line {_line_of(path, 'C000')})"),
    ]  # fmt: skip
    assert first.lines()[1:] == [f"line {n}: {why}" for n, why in sorted(expected)]
    assert first.counts["recorded"] == first.records - 4 - first.counts.get("returned", 0)
    stored = await snapshot(engine)
    again = await import_purchases(
        sessions, rules=settings.loyalty, tz=TZ, path=path, batch_size=500
    )
    assert again.counts.get("recorded", 0) == 0 and again.counts.get("returned", 0) == 0
    assert again.counts["already"] == first.counts["recorded"] + first.counts["returned"] + 1
    assert await snapshot(engine) == stored


def _line_of(path: Path, receipt_no: str, last: bool = False) -> int:
    """The line of the first (or `last` first-of-a-run) row of `receipt_no`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [n for n, text in enumerate(lines, 1) if text.startswith(f"{receipt_no},")]
    return found[-1] if last else found[0]


def _watch_batchers(monkeypatch) -> list[Batcher]:
    """The purchase import's batchers, as they are made (their counters read after)."""
    batchers: list[Batcher] = []

    class Watched(Batcher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            batchers.append(self)

    monkeypatch.setattr(purchase_sheet, "Batcher", Watched)
    return batchers
