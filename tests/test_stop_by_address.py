"""A stop from an address that is no member's yet is kept and applies when it joins.

End to end through the signed Twilio webhook and the operator API (nothing in the app
replaced), then the planner; and the domain calls the CSV import and the API share
(`models.members.upsert_member`, `models.consent`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.app import create_app
from bot.bot import MemberBot
from bot.conversation import Inbound
from models import consent
from models.db import transaction
from models.member_input import MemberIn
from models.members import get_member_by_phone, upsert_member
from models.rules import LoyaltyRules
from scheduler.plan.planner import plan_day
from scheduler.send.providers import SentSms
from tests.conftest import API_KEY
from tests.factories import make_member, make_store
from tests.fakes import TWILIO_AUTH_TOKEN
from tests.payloads import sms, twilio_signature

PUBLIC_URL = "https://bot.example.com"
NEWCOMER = "+8613911112222"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SH = ZoneInfo("Asia/Shanghai")
RULES = LoyaltyRules()


async def _sms(client, sender: str, text: str) -> str:
    form = sms(sender, text)
    headers = {"X-Twilio-Signature": twilio_signature(f"{PUBLIC_URL}/sms/twilio", form)}
    resp = await client.post("/sms/twilio", data=form, headers=headers)
    body = await resp.text()
    assert resp.status == 200, body
    return body


async def _api(client, method: str, path: str, body: dict | None = None) -> dict:
    resp = await client.request(method, path, json=body, headers=AUTH)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


@pytest.fixture
async def client(aiohttp_client, make_settings):
    settings = make_settings(
        server={"public_url": PUBLIC_URL},
        sms={"provider": "console", "twilio": {"auth_token": TWILIO_AUTH_TOKEN}},
    )
    client = await aiohttp_client(create_app(settings))
    await _api(client, "POST", "/api/stores", {"code": "S001", "name": "静安店", "city": "上海"})
    await _api(client, "POST", "/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"})
    return client


async def test_td_before_enrolment_stops_the_member_it_becomes(client, sessions, settings):
    before = datetime.now(UTC)
    reply = await _sms(client, NEWCOMER, "TD")
    assert "不会主动给这个号码发送消息" in reply, reply
    await _api(
        client, "POST", "/api/members",
        {"phone": NEWCOMER, "name": "新会员", "store": "S001", "assistant": "A001"},
    )  # fmt: skip
    await _api(
        client, "POST", "/api/purchases",
        {"receipt_no": "R1", "phone": NEWCOMER, "store": "S001", "assistant": "A001",
         "amount": "899.00", "at": "2026-11-20T15:00:00+08:00"},
    )  # fmt: skip
    view = await _api(client, "GET", "/api/members/" + NEWCOMER.replace("+", "%2B"))
    assert view["stopped"] is True
    (event,) = view["consent"]  # the proof, as it was given: time, channel, words
    assert (event["action"], event["channel"], event["source"]) == ("stop", "sms", "keyword: td")
    assert datetime.fromisoformat(event["at"]) >= before.replace(microsecond=0)
    # The planner plans nothing proactive for them: the points notice and day-3 care
    # are recorded suppressed "stopped", never queued.
    found = []
    for day in (date(2026, 11, 21), date(2026, 11, 22)):
        async with sessions() as session, session.begin():
            found += await plan_day(session, settings=settings, day=day)
    assert {(p.kind, p.status, p.reason) for p in found} == {
        ("points_notice", "suppressed", "stopped"),
        ("care_d3", "suppressed", "stopped"),
    }


async def test_resume_before_enrolment_undoes_the_stop(client):
    await _sms(client, NEWCOMER, "TD")
    again = await _sms(client, NEWCOMER, "TD")
    assert "已经退订" in again, again
    back = await _sms(client, NEWCOMER, "接受")
    assert "恢复接收" in back, back
    await _api(client, "POST", "/api/members", {"phone": NEWCOMER, "store": "S001"})
    view = await _api(client, "GET", "/api/members/" + NEWCOMER.replace("+", "%2B"))
    assert view["stopped"] is False
    assert [(e["action"], e["channel"]) for e in view["consent"]] == [
        ("stop", "sms"),
        ("resume", "sms"),
    ]


async def test_resume_from_an_unknown_number_with_nothing_stopped_is_the_not_member_answer(
    client,
):
    reply = await _sms(client, "+8613911113333", "接受")
    assert "恢复接收" not in reply and "会员" in reply, reply


async def test_the_member_sheet_import_and_an_openid_set_later_apply_stops(sessions):
    """`upsert_member` is what the CSV import and POST /api/members call."""
    t1 = datetime(2026, 11, 1, 10, tzinfo=UTC)
    async with transaction(sessions) as s:
        await consent.stop_address(s, channel="sms", address=NEWCOMER, at=t1, source="keyword: TD")
        await consent.stop_address(
            s, channel="wechat", address="o_stopped", at=t1, source="keyword: 不接受"
        )
        imported, created = await upsert_member(
            s, rules=RULES, tz=SH, data=MemberIn(phone=NEWCOMER), today=date(2026, 12, 2)
        )
        assert created and imported.stopped
        other, _ = await upsert_member(
            s, rules=RULES, tz=SH, data=MemberIn(phone="+8613911114444"), today=date(2026, 12, 2)
        )
        assert not other.stopped
        other, _ = await upsert_member(
            s, rules=RULES, tz=SH,
            data=MemberIn(phone="+8613911114444", wechat_openid="o_stopped"),
            today=date(2026, 12, 2),
        )  # fmt: skip
        assert other.stopped
        history = await consent.history(s, member_id=other.id)
        assert [(e.action, e.channel, e.at) for e in history] == [("stop", "wechat", t1)]


async def test_the_members_own_later_resume_wins_over_an_older_address_stop(sessions):
    t1 = datetime(2026, 11, 1, 10, tzinfo=UTC)
    async with transaction(sessions) as s:
        member, _ = await upsert_member(
            s, rules=RULES, tz=SH, data=MemberIn(phone=NEWCOMER), today=date(2026, 11, 1)
        )
        await consent.stop(s, member=member, channel="api", at=t1, source="operator")
        await consent.stop_address(
            s, channel="wechat", address="o_old", at=t1.replace(hour=11), source="keyword: TD"
        )
        await consent.resume(s, member=member, channel="api", at=t1.replace(hour=12), source="x")
        member, _ = await upsert_member(
            s, rules=RULES, tz=SH, data=MemberIn(phone=NEWCOMER, wechat_openid="o_old"),
            today=date(2026, 11, 2),
        )  # fmt: skip
        assert not member.stopped


class _CodeSms:
    """Records the binding code the bot sends by SMS."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, body: str, *, status_callback: str | None = None):
        self.sent.append((to, body))
        return SentSms(provider_id=f"fake-{len(self.sent)}", status="queued")


async def test_a_stop_sent_from_an_openid_applies_when_it_binds(settings, sessions):
    codes = _CodeSms()
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=codes)
    async with transaction(sessions) as s:
        store = await make_store(s)
        await make_member(s, phone=NEWCOMER, name="新会员", store=store)

    def wechat(text: str) -> Inbound:
        return Inbound(channel="wechat", sender="o_early_stop", text=text)

    assert (await bot.handle(wechat("TD"))).effects == ("stopped",)
    await bot.handle(wechat(f"绑定 {NEWCOMER}"))
    code = re.search(r"\b(\d{6})\b", codes.sent[-1][1]).group(1)
    assert (await bot.handle(wechat(code))).effects == ("bound",)
    async with sessions() as s:
        member = await get_member_by_phone(s, phone=NEWCOMER)
        history = await consent.history(s, member_id=member.id)
    assert member.stopped
    assert [e.channel for e in history] == ["wechat"]
