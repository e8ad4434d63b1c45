"""`memberbot import purchases` with returns (a `return_no` column) and `join_date` through
the member API, the CSV import and the export; anniversaries count from it."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from sqlmodel import select

from bot.app import create_app
from bot.csvio.export import export_members
from models.db import transaction
from models.points_reads import balance_check
from models.tables.ledger import PointsEntry
from models.tables.members import Member
from models.tables.till import SaleReturn
from tests.test_api import call, seed
from tests.test_csv_import import cli, config, members_by_phone, shop, write  # noqa: F401
from tests.test_planner import one, plan

HEADER = "receipt_no,return_no,phone,store,assistant,amount,at,sku,name,category,qty,item_amount"
pytestmark = pytest.mark.usefixtures("isolated_cli_env")


async def test_a_till_export_with_returns_loads_as_the_api_records_it(
    config,  # noqa: F811
    shop,  # noqa: F811
    sessions,
    tmp_path,
    capsys,
):
    rows = [
        HEADER,
        "R1,,13800138000,S1,A001,1500,2026-03-10T14:00:00+08:00,K1,衬衫,shirts,2,1000",
        "R1,,,,,,,K2,裤子,pants,1,500",
        "R1,T1,,,,,2026-03-12T10:00:00+08:00,K1,,,1,500",
        "R1,T1,,,,,2026-03-12T10:00:00+08:00,K2,,,1,500",
        "R1,T2,,,,,2026-03-13T10:00:00+08:00,K2,,,1,500",  # K2 is already back: 422
        "R9,T3,,,,,2026-03-13T10:00:00+08:00,K2,,,1,5",  # unknown receipt
    ]
    path = write(tmp_path / "till.csv", rows)
    assert await cli(config, "import", "purchases", str(path)) == 1
    out = capsys.readouterr().out
    assert "1 recorded" in out and "1 returns recorded" in out
    assert "line 6:" in out and "more of sku 'K2'" in out
    assert "line 7:" in out and "no sale with this receipt number" in out
    member = (await members_by_phone(sessions))["+8613800138000"]
    assert (member.points, member.cumulative_spend) == (500, 500)
    async with transaction(sessions) as s:
        back = (await s.exec(select(SaleReturn))).one()
        assert (back.return_no, back.points, back.amount) == ("T1", 1000, 1000)
        entry = (await s.exec(select(PointsEntry).where(PointsEntry.reason == "return"))).one()
        assert entry.delta == -1000
        assert await balance_check(s, member_id=member.id) == (500, 500, 500)
    # the same file again changes nothing
    assert await cli(config, "import", "purchases", str(path)) == 1
    assert "0 recorded, 2 already recorded" in capsys.readouterr().out
    assert (await members_by_phone(sessions))["+8613800138000"].points == 500


async def test_join_date_through_the_api(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    await seed(client)
    body = {"phone": "13800138000", "name": "张三", "join_date": "2019-04-02"}
    status, view = await call(client, "POST", "/api/members", body)
    assert status == 201 and view["join_date"] == "2019-04-02"
    status, view = await call(client, "POST", "/api/members", {**body, "join_date": "2019-04-03"})
    assert status == 200 and view["join_date"] == "2019-04-03"
    status, view = await call(client, "POST", "/api/members", {"phone": "13800138000"})
    assert view["join_date"] == "2019-04-03"  # kept when not given
    for bad in ("2019-02-30", "04-03", "2999-01-01", 20190403, None):
        status, err = await call(client, "POST", "/api/members", {**body, "join_date": bad})
        assert status == 422 and err["field"] == "join_date", (bad, err)


async def test_join_date_in_the_csv_import_and_export(
    config,  # noqa: F811
    shop,  # noqa: F811
    sessions,
    settings,
    tmp_path,
    capsys,
):
    path = write(
        tmp_path / "m.csv",
        ["phone,name,store,join_date", "13800138001,张伟,S1,2018-06-01", "13800138002,陈静,S1,"],
    )
    assert await cli(config, "import", "members", str(path)) == 0
    found = await members_by_phone(sessions)
    assert found["+8613800138001"].join_date == date(2018, 6, 1)
    out = io.StringIO(newline="")
    await export_members(sessions, out=out, tz=settings.brand.tz)
    rows = {r["phone"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["+8613800138001"]["join_date"] == "2018-06-01"
    again = write(tmp_path / "again.csv", out.getvalue().splitlines())
    capsys.readouterr()
    assert await cli(config, "import", "members", str(again)) == 0
    assert "2 unchanged" in capsys.readouterr().out


async def test_the_join_anniversary_counts_from_the_join_date_given(
    aiohttp_client, settings, sessions
):
    client = await aiohttp_client(create_app(settings))
    await seed(client)
    body = {"phone": "13800138000", "name": "张三", "store": "S001", "join_date": "2019-04-02"}
    assert (await call(client, "POST", "/api/members", body))[0] == 201
    async with transaction(sessions) as s:
        member = (await s.exec(select(Member))).one()
    planned = await plan(sessions, settings, date(2026, 4, 2))
    assert "7周年" in one(planned, member, "join_anniversary").text
