"""A member's data rights end to end: export everything, erase personal data from every
table (CLI and API), keep amounts and consent proof, leave other members alone."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.cli import main
from models.tables.schema import METADATA
from tests.conftest import API_KEY
from tests.payloads import plain, wechat_settings, wechat_text

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE, NAME, OPENID = "+8613912345678", "欧阳娜娜", "o_erase_me_0001"
OTHER_PHONE, OTHER_NAME = "+8613800138009", "司马光"


@pytest.fixture
async def client(aiohttp_client, make_settings):
    settings = make_settings(wechat=wechat_settings(aes_key=""))
    return await aiohttp_client(create_app(settings))


async def _post(client, path: str, body: dict, headers=AUTH) -> dict:
    resp = await client.post(path, json=body, headers=headers)
    assert resp.status in (200, 201, 202), (path, resp.status, await resp.text())
    return await resp.json()


async def _wechat(client, text: str) -> None:
    query, body = plain(wechat_text(OPENID, text))
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 200


async def _a_member_with_history(client) -> None:
    await _post(client, "/api/stores", {"code": "S1", "name": "一店", "city": "上海"})
    token = (await _post(client, "/api/assistants", {"code": "A1", "name": "王丽", "store": "S1"}))[
        "token"
    ]
    for phone, name, extra in (
        (PHONE, NAME, {"wechat_openid": OPENID}),
        (OTHER_PHONE, OTHER_NAME, {}),
    ):
        await _post(client, "/api/members", {
            "phone": phone, "name": name, "gender": "F", "birthday": "1990-05-06",
            "store": "S1", "assistant": "A1", "card_no": f"C{phone[-4:]}", **extra,
        })  # fmt: skip
        await _post(client, "/api/purchases", {
            "receipt_no": f"R{phone[-4:]}", "phone": phone, "store": "S1", "assistant": "A1",
            "amount": "3200.00", "at": "2026-11-20T15:00:00+08:00",
            "items": [{"sku": "K1", "name": "大衣", "category": "coat", "qty": 1,
                       "amount": "3200.00"}],
        })  # fmt: skip
    await _post(client, "/api/greetings",
                {"member": PHONE, "occasion": "other", "note": f"{NAME}，天冷了注意保暖"},
                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    await _wechat(client, "积分")
    await _wechat(client, f"我是{NAME}，这件大衣有没有L码")  # a conversation with the store
    await _wechat(client, "兑换 1")  # a pending confirmation, left open
    await _post(client, f"/api/members/{PHONE}/stop", {"note": "asked at the till"})


def _texts(row: dict) -> list[str]:
    return [v for v in row.values() if isinstance(v, str)]


async def _every_text(engine) -> dict[str, list[str]]:
    """Every string value of every table."""
    found: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        for table in METADATA.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            found[table.name] = [v for row in rows for v in row if isinstance(v, str)]
    return found


def _holding(texts: dict[str, list[str]], needle: str) -> list[str]:
    return sorted({name for name, values in texts.items() for v in values if needle in v})


async def test_export_holds_everything_about_the_member(client):
    await _a_member_with_history(client)
    resp = await client.get(f"/api/members/{PHONE}/export", headers=AUTH)
    assert resp.status == 200
    document = await resp.json()
    assert document["member"]["name"] == NAME and document["member"]["phone"] == PHONE
    assert [p["receipt_no"] for p in document["purchases"]] == ["R5678"]
    assert document["purchase_items"][0]["name"] == "大衣"
    assert {i["address"] for i in document["identities"]} >= {OPENID}
    assert sum(e["delta"] for e in document["points_ledger"]) == document["member"]["points"]
    assert any(e["action"] == "stop" for e in document["consent_events"])
    assert any(NAME in m["text"] for m in document["outbox"])
    assert document["inbound_messages"]  # the WeChat messages
    assert any(NAME in m.get("text", "") for m in document["conversation_messages"])
    assert all(OTHER_PHONE not in json.dumps(v, ensure_ascii=False) for v in document.values())


async def test_erase_through_the_api_leaves_no_phone_or_name(client, engine):
    await _a_member_with_history(client)
    before = await _every_text(engine)
    assert _holding(before, PHONE[3:]) and _holding(before, NAME) and _holding(before, OPENID)
    resp = await client.delete(f"/api/members/{PHONE}", headers=AUTH)
    body = await resp.json()
    assert resp.status == 200 and body["erased"] is True
    after = await _every_text(engine)
    for needle in (PHONE[3:], NAME, OPENID, "1990"):
        assert _holding(after, needle) == [], needle
    # the other member is untouched
    assert _holding(after, OTHER_PHONE) and _holding(after, OTHER_NAME)
    # amounts and the proof of the stop are kept, without the person
    resp = await client.get(f"/api/members/{OTHER_PHONE}", headers=AUTH)
    assert (await resp.json())["points"] > 0
    async with engine.connect() as conn:
        ledger = METADATA.tables["points_ledger"]
        members = METADATA.tables["members"]
        erased = (await conn.execute(select(members).where(members.c.phone.like("erased:%")))).one()
        points = (await conn.execute(select(ledger.c.delta).where(
            ledger.c.member_id == erased.id))).scalars().all()  # fmt: skip
        consent = METADATA.tables["consent_events"]
        proof = (await conn.execute(select(consent).where(consent.c.member_id == erased.id))).all()
    assert sum(points) == erased.points > 0 and erased.stopped
    assert [(p.action, p.address) for p in proof] == [("stop", None)]
    # erasing again finds nobody and changes nothing
    again = await client.delete(f"/api/members/{PHONE}", headers=AUTH)
    assert again.status == 200 and (await again.json())["erased"] is False
    assert await _every_text(engine) == after


async def test_cli_export_and_erase(client, engine, db_url, tmp_path, capsys, monkeypatch):
    await _a_member_with_history(client)
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> int:
        return main(["--config", str(config), *argv])

    assert await asyncio.to_thread(run, "member", "export", "139 1234 5678") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["member"]["name"] == NAME
    assert await asyncio.to_thread(run, "member", "erase", PHONE) == 0
    out = capsys.readouterr().out
    assert out.startswith("erased member ") and "5678" in out and "12345678" not in out
    assert _holding(await _every_text(engine), NAME) == []
    assert await asyncio.to_thread(run, "member", "erase", PHONE) == 0
    assert "nothing to erase" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "member", "export", PHONE) == 1
    assert await asyncio.to_thread(run, "member", "erase", "not-a-phone") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("memberbot: error: ") for line in err)
