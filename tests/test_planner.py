"""scheduler.plan.planner: what is due on a day, with explicit dates, on both engines."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, text
from sqlmodel import SQLModel, col, select

from models.tables.cards import CardApplication, CardEvent
from models.tables.ledger import PointsEntry, PointsLot
from models.tables.members import Assistant, Identity, Member, Store
from models.tables.outbox import OutboxEvent, OutboxMessage
from models.tables.purchases import Purchase, PurchaseItem
from scheduler.plan import planner
from scheduler.plan.card_steps import card_step_due, due_card_steps
from scheduler.plan.occasion_due import dormant_range, join_dates
from scheduler.plan.plan_save import pending_only, save_plan
from scheduler.plan.plan_types import Planned, SaveResult
from scheduler.plan.planner import plan_day
from tests.conftest import is_pg

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
_phones = itertools.count(13800000001)


def local(day: date, hh: int = 10, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=SH)


# --------------------------------------------------------------------------- data helpers


async def shop(
    session, *, code="S1", name="南京西路店", assistant="王丽"
) -> tuple[Store, Assistant]:
    store = Store(code=code, name=name, city="上海")
    session.add(store)
    await session.flush()
    helper = Assistant(code=f"{code}-A", name=assistant, store_id=store.id)
    session.add(helper)
    await session.flush()
    return store, helper


async def member(session, store: Store, helper: Assistant | None, **kw) -> Member:
    values = {
        "phone": f"+86{next(_phones)}",
        "name": "李娜",
        "store_id": store.id,
        "assistant_id": helper.id if helper else None,
        "join_date": date(2025, 6, 20),
        "tier": "points",
    }
    values.update(kw)
    m = Member(**values)
    session.add(m)
    await session.flush()
    return m


async def buy(
    session,
    m: Member,
    on: date,
    *,
    amount: str = "899",
    items=(("羊毛大衣", "wool"),),
    points: int | None = None,
) -> Purchase:
    """A purchase row on brand day `on` (10:00), and the member's totals."""
    at = local(on)
    p = Purchase(
        receipt_no=f"R{m.id}-{on.isoformat()}-{len(items)}-{amount}",
        member_id=m.id,
        store_id=m.store_id,
        assistant_id=m.assistant_id,
        amount=Decimal(amount),
        at=at,
        local_date=on,
        points=int(Decimal(amount)) if points is None else points,
    )
    session.add(p)
    await session.flush()
    for name, category in items:
        session.add(
            PurchaseItem(purchase_id=p.id, name=name, category=category, amount=Decimal(amount))
        )
    m.last_purchase_at = max(m.last_purchase_at or at, at)
    m.points += p.points
    m.cumulative_spend += p.amount
    session.add(m)
    await session.flush()
    return p


async def plan(sessions, settings, day: date) -> list[Planned]:
    async with sessions() as session, session.begin():
        return await plan_day(session, settings=settings, day=day)


async def plan_and_save(sessions, settings, day: date) -> list[Planned]:
    async with sessions() as session, session.begin():
        planned = await plan_day(session, settings=settings, day=day)
        await save_plan(session, planned=planned, now=local(day, 8))
        return planned


def of(planned, m: Member) -> list[Planned]:
    return [p for p in planned if p.member_id == m.id]


def kinds(planned, m: Member) -> list[str]:
    return sorted(p.kind for p in of(planned, m))


def one(planned, m: Member, kind: str) -> Planned:
    found = [p for p in of(planned, m) if p.kind == kind]
    assert len(found) == 1, (kind, of(planned, m))
    return found[0]


async def outbox_rows(sessions) -> list[OutboxMessage]:
    async with sessions() as session:
        return list(await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))


async def add_outbox(session, m: Member, kind: str, occasion: str, day: date, **kw) -> None:
    values = {
        "member_id": m.id,
        "kind": kind,
        "occasion": occasion,
        "planned_on": day,
        "text": "x",
        "channel": "sms",
        "via": "twilio",
        "address": m.phone,
        "status": "sent",
        "send_after": local(day, 9),
    }
    values.update(kw)
    session.add(OutboxMessage(**values))
    await session.flush()


# --------------------------------------------------------------------------- pure rules


def test_join_dates_cover_29_february_in_common_years():
    got = join_dates(date(2027, 2, 28))
    assert got[date(2024, 2, 29)] == 3 and got[date(2026, 2, 28)] == 1
    assert date(2027, 2, 28) not in got  # the join day itself is no anniversary
    assert date(2024, 2, 29) not in join_dates(date(2028, 2, 28))  # leap year: on the 29th
    assert join_dates(date(2028, 2, 29))[date(2024, 2, 29)] == 4


def test_dormant_range_is_the_first_day_past_the_months():
    assert dormant_range(date(2026, 11, 16), 10) == (date(2026, 1, 15), date(2026, 1, 16))
    # month ends: 31 Jan + 10 months clamps; the range never overlaps between days
    assert dormant_range(date(2026, 12, 1), 10) == (date(2026, 1, 30), date(2026, 2, 1))
    assert dormant_range(date(2026, 12, 31), 10) == (date(2026, 2, 28), date(2026, 2, 28))


def test_card_step_rules():
    d = date(2026, 11, 10)
    kw = {"day": d, "approved_on": None, "pickup_date": None, "notified_again_on": None}
    ok = {**kw, "has_address": True}
    assert card_step_due(status="approved", **{**ok, "approved_on": d - timedelta(days=1)}) == (
        "card_pickup",
        "notified",
    )
    assert card_step_due(status="approved", **{**ok, "approved_on": d}) is None
    assert card_step_due(status="notified", **ok) is None  # no agreed day yet
    assert card_step_due(status="notified", **{**ok, "pickup_date": d}) is None
    assert card_step_due(status="notified", **{**ok, "pickup_date": d - timedelta(days=1)}) == (
        "card_pickup_again",
        "notified_again",
    )
    second = {
        **ok,
        "pickup_date": d - timedelta(days=5),
        "notified_again_on": d - timedelta(days=1),
    }
    assert card_step_due(status="notified_again", **second) is None  # the day after the notice
    second["notified_again_on"] = d - timedelta(days=2)
    assert card_step_due(status="notified_again", **second) == ("card_mailed", "mailed")
    assert card_step_due(status="notified_again", **{**second, "has_address": False}) is None
    later = {**second, "pickup_date": d}  # the member agreed a new day: wait for it
    assert card_step_due(status="notified_again", **later) is None
    assert card_step_due(status="picked_up", **ok) is None


# --------------------------------------------------------------------------- purchases


async def test_purchase_follow_ups_count_the_sale_day_as_day_one(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        vip = await member(session, store, helper, tier="gold", name="周敏")
        card = await member(session, store, helper, tier="points", name="陈静")
        await buy(session, vip, date(2026, 11, 1))
        await buy(session, card, date(2026, 11, 1))
    seen: dict[str, dict[date, list[str]]] = {"vip": {}, "card": {}}
    day = date(2026, 11, 1)
    while day <= date(2027, 3, 2):
        planned = await plan(sessions, settings, day)
        for label, m in (("vip", vip), ("card", card)):
            if got := kinds(planned, m):
                seen[label][day] = got
        day += timedelta(days=1)
    assert seen["vip"] == {
        date(2026, 11, 2): ["points_notice"],
        date(2026, 11, 3): ["care_d3"],
        date(2026, 11, 7): ["care_d7", "seasonal"],  # 立冬 is every member's
        date(2026, 11, 30): ["care_d30"],
        date(2027, 1, 1): ["holiday"],
        date(2027, 2, 4): ["seasonal"],
        date(2027, 2, 6): ["holiday"],
        date(2027, 2, 20): ["holiday"],
        date(2027, 2, 28): ["care_d120"],
    }
    card_days = {d: k for d, k in seen["card"].items() if k not in (["holiday"], ["seasonal"])}
    assert card_days == {
        date(2026, 11, 2): ["points_notice"],
        date(2026, 11, 3): ["care_d3"],
        date(2026, 11, 10): ["care_d10"],
        date(2026, 11, 30): ["care_d30"],
        date(2027, 2, 28): ["care_d120"],
    }


async def test_points_notice_text_and_occasion(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, name="王芳")
        p = await buy(session, m, date(2026, 11, 1), amount="1280", items=(("真丝衬衫", "silk"),))
    planned = await plan(sessions, settings, date(2026, 11, 2))
    notice = one(planned, m, "points_notice")
    assert notice.occasion == f"purchase:{p.id}"
    assert notice.status == "queued" and notice.reason is None
    assert "2026年11月1日" in notice.text and "南京西路店" in notice.text
    assert "真丝衬衫" in notice.text and "1,280分" in notice.text
    assert "还差1,720分" in notice.text  # the 3,000-point voucher
    assert notice.text.endswith("回复TD退订")
    assert (notice.store_id, notice.assistant_id) == (store.id, helper.id)
    assert notice.locale == "zh_CN" and notice.phone == m.phone
    assert (notice.channel, notice.via, notice.address) == ("sms", "console", m.phone)


async def test_care_day_3_carries_the_item_care_tips_in_the_member_language(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, name="Emma", locale="en")
        await buy(session, m, date(2026, 11, 1), items=(("Silk blouse", "tops"), ("Belt", "")))
    planned = await plan(sessions, settings, date(2026, 11, 3))
    care = one(planned, m, "care_d3")
    assert care.locale == "en"
    assert "Silk blouse" in care.text and "Hand-wash in cold water" in care.text
    assert care.text.splitlines()[-2] == "— 南京西路店, 王丽"
    assert care.text.endswith("Reply STOP to opt out")


# --------------------------------------------------------------------------- greetings


async def test_solar_birthday_and_29_february_in_a_common_year(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        may = await member(session, store, helper, birthday_month=5, birthday_day=20)
        leap = await member(session, store, helper, birthday_month=2, birthday_day=29)
    assert kinds(await plan(sessions, settings, date(2026, 5, 20)), may) == ["birthday"]
    assert kinds(await plan(sessions, settings, date(2026, 5, 19)), may) == []
    assert kinds(await plan(sessions, settings, date(2026, 5, 21)), may) == []
    planned = await plan(sessions, settings, date(2027, 2, 28))
    assert one(planned, leap, "birthday").occasion == "2027"
    assert kinds(await plan(sessions, settings, date(2027, 3, 1)), leap) == []
    assert kinds(await plan(sessions, settings, date(2028, 2, 28)), leap) == []
    assert kinds(await plan(sessions, settings, date(2028, 2, 29)), leap) == ["birthday"]


async def test_lunar_birthdays(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        lunar = await member(
            session, store, helper, birthday_calendar="lunar", birthday_month=3, birthday_day=10
        )
        # lunar 2-30: the 2nd month of lunar 2026 has 29 days (its 29th is 2026-04-16)
        thirtieth = await member(
            session, store, helper, birthday_calendar="lunar", birthday_month=2, birthday_day=30
        )
        regular = await member(
            session, store, helper, birthday_calendar="lunar", birthday_month=6, birthday_day=10
        )
        leap = await member(
            session,
            store,
            helper,
            birthday_calendar="lunar",
            birthday_month=6,
            birthday_day=10,
            birthday_leap_month=True,
        )
    for day in (date(2026, 4, 26), date(2027, 4, 16)):  # lunar 3-10
        assert kinds(await plan(sessions, settings, day), lunar) == ["birthday"]
        assert kinds(await plan(sessions, settings, day - timedelta(days=1)), lunar) == []
        assert kinds(await plan(sessions, settings, day + timedelta(days=1)), lunar) == []
    assert kinds(await plan(sessions, settings, date(2026, 4, 16)), thirtieth) == ["birthday"]
    assert kinds(await plan(sessions, settings, date(2026, 4, 17)), thirtieth) == []
    assert kinds(await plan(sessions, settings, date(2026, 4, 15)), thirtieth) == []
    # 2025 repeats the 6th month: greeted in the regular month only (07-04), leap-born too
    planned = await plan(sessions, settings, date(2025, 7, 4))
    assert kinds(planned, regular) == ["birthday"] and kinds(planned, leap) == ["birthday"]
    planned = await plan(sessions, settings, date(2025, 8, 3))  # leap 6-10
    assert kinds(planned, regular) == [] and kinds(planned, leap) == []


async def test_wedding_and_join_anniversaries(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        wed = await member(
            session, store, helper, wedding_year=2016, wedding_month=8, wedding_day=18
        )
        newly = await member(
            session, store, helper, wedding_year=2026, wedding_month=8, wedding_day=18
        )
        joined = await member(session, store, helper, join_date=date(2024, 2, 29))
    planned = await plan(sessions, settings, date(2026, 8, 18))
    assert kinds(planned, wed) == ["wedding_anniversary"]
    assert "结婚10周年" in one(planned, wed, "wedding_anniversary").text
    assert kinds(planned, newly) == []  # the wedding day itself is no anniversary
    assert kinds(await plan(sessions, settings, date(2026, 8, 17)), wed) == []
    assert kinds(await plan(sessions, settings, date(2027, 8, 18)), newly) == [
        "wedding_anniversary"
    ]
    planned = await plan(sessions, settings, date(2027, 2, 28))
    jubilee = one(planned, joined, "join_anniversary")
    assert jubilee.occasion == "2027" and "3周年" in jubilee.text
    assert kinds(await plan(sessions, settings, date(2027, 3, 1)), joined) == []
    assert kinds(await plan(sessions, settings, date(2024, 2, 29)), joined) == []


async def test_festival_and_season_days_greet_every_member(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        members = [await member(session, store, helper) for _ in range(5)]
        stopped = await member(session, store, helper, stopped=True)
        other_store, other_helper = await shop(session, code="S2", name="静安店", assistant="赵磊")
        far = await member(session, other_store, other_helper, name="Tom", locale="en")
    planned = await plan(sessions, settings, date(2026, 9, 25))  # 中秋
    for m in members:
        greeting = one(planned, m, "holiday")
        assert greeting.occasion == "mid_autumn:2026" and greeting.status == "queued"
        assert "中秋快乐" in greeting.text and "——南京西路店 王丽" in greeting.text
    assert one(planned, stopped, "holiday").reason == "stopped"
    english = one(planned, far, "holiday")
    assert "Mid-Autumn" in english.text and "— 静安店, 赵磊" in english.text
    planned = await plan(sessions, settings, date(2026, 11, 7))  # 立冬
    assert {p.occasion for p in planned} == {"lidong:2026"}
    assert len(planned) == 7 and all(p.kind == "seasonal" for p in planned)
    assert await plan(sessions, settings, date(2026, 11, 6)) == []
    assert await plan(sessions, settings, date(2026, 11, 8)) == []


async def test_festival_day_pages_through_members_in_chunks(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        ms = [await member(session, store, helper) for _ in range(7)]
        await buy(session, ms[3], date(2026, 9, 24))
    async with sessions() as session, session.begin():
        batches = [
            b
            async for b in planner.iter_plan(
                session, settings=settings, day=date(2026, 9, 25), chunk_size=3
            )
        ]
    assert [len(b) for b in batches] == [3, 4, 1]  # the 4th member also has a points notice
    assert kinds([p for b in batches for p in b], ms[3]) == ["holiday", "points_notice"]


async def test_a_plan_kept_to_some_members_is_the_full_plan_of_those_members(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        ms = [await member(session, store, helper) for _ in range(6)]
        for m in ms[:4]:
            await buy(session, m, date(2026, 9, 23))
    chosen = {ms[1].id, ms[4].id}
    for day in (date(2026, 9, 24), date(2026, 9, 25)):  # an ordinary day, then 中秋
        full = await plan(sessions, settings, day)
        async with sessions() as session, session.begin():
            kept = [
                p
                async for b in planner.iter_plan(
                    session, settings=settings, day=day, chunk_size=1, members=chosen
                )
                for p in b
            ]
        assert kept == [p for p in full if p.member_id in chosen]
        assert kept and {p.member_id for p in kept} <= chosen


# --------------------------------------------------------------------------- dormant


async def test_dormant_once_after_ten_months_and_again_after_a_new_purchase(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
        await buy(session, m, date(2026, 1, 15))
    found = []
    day = date(2026, 11, 10)
    while day <= date(2026, 11, 25):
        planned = await plan_and_save(sessions, settings, day)
        found += [(day, p.occasion) for p in of(planned, m) if p.kind == "dormant"]
        day += timedelta(days=1)
    assert found == [(date(2026, 11, 16), "since:2026-01-15")]
    dormant = [r for r in await outbox_rows(sessions) if r.kind == "dormant"]
    assert len(dormant) == 1 and "很想念您" in dormant[0].text
    async with sessions() as session, session.begin():
        m = await session.get(Member, m.id)
        await buy(session, m, date(2027, 1, 10))
    assert kinds(await plan(sessions, settings, date(2027, 11, 10)), m) == []
    planned = await plan(sessions, settings, date(2027, 11, 11))
    assert one(planned, m, "dormant").occasion == "since:2027-01-10"


# --------------------------------------------------------------------------- points expiry


async def test_points_expiry_notice_n_days_before(sessions, make_settings):
    settings = make_settings(messaging={"points_expiry_notice_days": 10})
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, points=1500)
        spent = await member(session, store, helper, points=0)
        for who, remaining in ((m, 1000), (m, 500), (spent, 0)):
            entry = PointsEntry(
                member_id=who.id,
                delta=remaining or 200,
                reason="purchase",
                at=local(date(2025, 3, 1)),
                local_date=date(2025, 3, 1),
                key=f"k{who.id}-{remaining}",
                balance_after=remaining,
            )
            session.add(entry)
            await session.flush()
            session.add(
                PointsLot(
                    member_id=who.id,
                    entry_id=entry.id,
                    earned_on=date(2025, 3, 1),
                    expires_on=date(2026, 12, 31),
                    points=remaining or 200,
                    remaining=remaining,
                )
            )
    planned = await plan(sessions, settings, date(2026, 12, 21))
    notice = one(planned, m, "points_expiry")
    assert notice.occasion == "lots:2026-12-31"
    assert "1,500分积分将于2026年12月31日到期" in notice.text
    assert kinds(planned, spent) == []
    assert kinds(await plan(sessions, settings, date(2026, 12, 20)), m) == []
    assert kinds(await plan(sessions, settings, date(2026, 12, 22)), m) == []


# --------------------------------------------------------------------------- card pickup


async def card_app(session, m: Member, status: str, events: list[tuple[str, datetime]], **kw):
    app = CardApplication(
        member_id=m.id,
        tier="gold",
        status=status,
        store_id=m.store_id,
        assistant_id=m.assistant_id,
        created_at=NOW,
        updated_at=NOW,
        **kw,
    )
    session.add(app)
    await session.flush()
    prev = "sent_to_head_office"
    for to_status, at in events:
        session.add(CardEvent(application_id=app.id, from_status=prev, to_status=to_status, at=at))
        prev = to_status
    await session.flush()
    return app


async def test_card_pickup_steps(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        a, b, c, d = [
            await member(session, store, helper, address="上海市静安区1号") for _ in "abcd"
        ]
        # approved late on 11-09 brand time (15:30 UTC = 23:30 Shanghai)
        approved = await card_app(
            session, a, "approved", [("approved", datetime(2026, 11, 9, 15, 30, tzinfo=UTC))]
        )
        missed = await card_app(
            session,
            b,
            "notified",
            [("approved", local(date(2026, 11, 1))), ("notified", local(date(2026, 11, 2)))],
            pickup_date=date(2026, 11, 9),
        )
        twice = await card_app(
            session,
            c,
            "notified_again",
            [
                ("approved", local(date(2026, 11, 1))),
                ("notified", local(date(2026, 11, 2))),
                ("notified_again", local(date(2026, 11, 8), 8)),
            ],
            pickup_date=date(2026, 11, 7),
        )
        waiting = await card_app(
            session,
            d,
            "notified",
            [("approved", local(date(2026, 11, 1)))],
            pickup_date=date(2026, 11, 12),
        )
    day = date(2026, 11, 10)
    planned = await plan(sessions, settings, day)
    pickup = one(planned, a, "card_pickup")
    assert pickup.occasion == f"card:{approved.id}" and "金卡" in pickup.text
    assert one(planned, b, "card_pickup_again").occasion == f"card:{missed.id}"
    assert one(planned, c, "card_mailed").occasion == f"card:{twice.id}"
    assert kinds(planned, d) == []
    async with sessions() as session:
        steps = await due_card_steps(session, day=day, tz=SH)
    assert [(s.application_id, s.kind, s.to_status) for s in steps] == [
        (approved.id, "card_pickup", "notified"),
        (missed.id, "card_pickup_again", "notified_again"),
        (twice.id, "card_mailed", "mailed"),
    ]
    planned = await plan(sessions, settings, date(2026, 11, 9))
    assert kinds(planned, a) == [] and kinds(planned, b) == [] and kinds(planned, c) == []
    planned = await plan(sessions, settings, date(2026, 11, 13))
    assert one(planned, d, "card_pickup_again").occasion == f"card:{waiting.id}"


# --------------------------------------------------------------------------- suppression


async def test_stopped_member_gets_suppressed_messages_only(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, stopped=True, birthday_month=5, birthday_day=20)
        await buy(session, m, date(2026, 5, 19))
    planned = await plan(sessions, settings, date(2026, 5, 20))
    assert kinds(planned, m) == ["birthday", "points_notice"]
    for p in of(planned, m):
        assert (p.status, p.reason, p.channel) == ("suppressed", "stopped", "")
        assert p.text  # the text is kept for the record


async def test_no_channel_when_the_number_is_bad(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, birthday_month=5, birthday_day=20)
        session.add(Identity(member_id=m.id, channel="sms", address=m.phone, bad=True))
    p = one(await plan(sessions, settings, date(2026, 5, 20)), m, "birthday")
    assert (p.status, p.reason, p.channel) == ("suppressed", "no_channel", "")


async def test_a_broken_rule_suppresses_with_the_rule_name(sessions, make_settings):
    festival = {
        "code": "double_eleven",
        "name_zh": "双十一大促",
        "name_en": "Singles' Day sale",
        "calendar": "solar",
        "month": 11,
        "day": 11,
    }
    settings = make_settings(occasions={"festivals": [festival]})
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
    p = one(await plan(sessions, settings, date(2026, 11, 11)), m, "holiday")
    assert (p.status, p.reason) == ("suppressed", "rule:promotion_in_greeting")


async def test_weekly_cap_keeps_the_greeting_of_the_day(sessions, settings):
    day = date(2026, 5, 20)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, birthday_month=5, birthday_day=20)
        busy = await member(session, store, helper, birthday_month=5, birthday_day=20)
        for who in (m, busy):
            await buy(session, who, day - timedelta(days=2))  # care_d3 today
            await buy(session, who, day - timedelta(days=1), amount="99")  # points notice today
        await add_outbox(session, busy, "care_d30", "purchase:1", day - timedelta(days=6))
        await add_outbox(session, busy, "points_notice", "purchase:2", day - timedelta(days=1))
        # a suppressed message and one older than 7 days do not count
        await add_outbox(session, m, "care_d30", "purchase:3", day - timedelta(days=7))
        await add_outbox(session, m, "care_d10", "purchase:4", day, status="suppressed")
    planned = await plan(sessions, settings, day)
    got = {p.kind: (p.status, p.reason) for p in of(planned, m)}
    assert got == {
        "birthday": ("queued", None),
        "points_notice": ("queued", None),
        "care_d3": ("suppressed", "capped"),
    }
    capped = one(planned, m, "care_d3")
    assert (capped.channel, capped.via, capped.address) == ("", "", "")
    got = {p.kind: (p.status, p.reason) for p in of(planned, busy)}
    assert got == {
        "birthday": ("queued", None),
        "points_notice": ("suppressed", "capped"),
        "care_d3": ("suppressed", "capped"),
    }
    # a rerun decides the same: today's own messages are not counted against themselves
    await plan_and_save(sessions, settings, day)
    again = await plan(sessions, settings, day)
    assert [(p.key, p.status, p.reason) for p in again] == [
        (p.key, p.status, p.reason) for p in planned
    ]


# --------------------------------------------------------------------------- timing and channels


async def test_quiet_hours_and_preferred_contact_time(sessions, make_settings):
    settings = make_settings(messaging={"send_window": "20:00-02:00"})
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        evening = await member(
            session,
            store,
            helper,
            birthday_month=5,
            birthday_day=20,
            preferred_contact="21:30-23:00",
        )
        night = await member(session, store, helper, birthday_month=5, birthday_day=20)
    planned = await plan(sessions, settings, date(2026, 5, 20))
    assert one(planned, evening, "birthday").send_after == local(date(2026, 5, 20), 21, 30)
    assert one(planned, night, "birthday").send_after == local(date(2026, 5, 20), 0)
    planned = await plan(sessions, make_settings(), date(2026, 5, 20))
    assert one(planned, night, "birthday").send_after == local(date(2026, 5, 20), 9)


async def test_preferred_contact_19_to_21(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(
            session,
            store,
            helper,
            birthday_month=5,
            birthday_day=20,
            preferred_contact="19:00-21:00",
        )
    p = one(await plan(sessions, settings, date(2026, 5, 20)), m, "birthday")
    assert p.send_after == datetime(2026, 5, 20, 11, 0, tzinfo=UTC)  # 19:00 Shanghai


async def test_wechat_window_template_and_sms(sessions, make_settings):
    settings = make_settings(
        wechat={"enabled": True, "templates": {"points_notice": "TMPL-1"}},
        sms={"provider": "twilio"},
        messaging={"weekly_cap": 9},
    )
    day = date(2026, 5, 20)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        chatty = await member(session, store, helper, birthday_month=5, birthday_day=20)
        quiet = await member(session, store, helper, birthday_month=5, birthday_day=20)
        full = await member(session, store, helper, birthday_month=5, birthday_day=20)
        inbound = local(day - timedelta(days=1), 20)  # 13 hours before 09:00
        session.add(
            Identity(
                member_id=chatty.id, channel="wechat", address="o-chatty", last_inbound_at=inbound
            )
        )
        session.add(Identity(member_id=quiet.id, channel="wechat", address="o-quiet"))
        session.add(
            Identity(member_id=full.id, channel="wechat", address="o-full", last_inbound_at=inbound)
        )
        for who in (chatty, quiet, full):
            await buy(session, who, day - timedelta(days=1))
        for i in range(4):  # four customer-service messages since the member wrote
            await add_outbox(
                session,
                full,
                "personal_greeting",
                f"greeting:{i}",
                day - timedelta(days=10),
                via="customer_service",
                channel="wechat",
                send_after=inbound + timedelta(minutes=10 + i),
                status="sent",
            )
    planned = await plan(sessions, settings, day)
    assert {p.kind: p.via for p in of(planned, chatty)} == {
        "birthday": "customer_service",
        "points_notice": "customer_service",
    }
    assert one(planned, chatty, "birthday").address == "o-chatty"
    assert {p.kind: (p.channel, p.via, p.address) for p in of(planned, quiet)} == {
        "birthday": ("sms", "twilio", quiet.phone),
        "points_notice": ("wechat", "template", "o-quiet"),
    }
    # the 5th customer-service message is the greeting; the notice falls back to a template
    assert {p.kind: p.via for p in of(planned, full)} == {
        "birthday": "customer_service",
        "points_notice": "template",
    }


# --------------------------------------------------------------------------- quarterly fallback


async def run_days(sessions, settings, start: date, end: date) -> list[Planned]:
    out = []
    day = start
    while day <= end:
        out += await plan_and_save(sessions, settings, day)
        day += timedelta(days=1)
    return out


async def test_quarterly_fallback_after_follow_ups_without_purchases(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        lone = await member(session, store, helper)
        back = await member(session, store, helper)
        for who in (lone, back):
            await buy(session, who, date(2026, 1, 5))
        await buy(session, back, date(2026, 4, 20))
    planned = await run_days(sessions, settings, date(2026, 1, 5), date(2026, 11, 10))
    others = ("holiday", "seasonal", "join_anniversary")
    got = [(p.planned_on, p.kind, p.occasion) for p in of(planned, lone) if p.kind not in others]
    first = [p for p in of(planned, lone) if p.planned_on == date(2026, 1, 6)][0].occasion
    assert got == [
        (date(2026, 1, 6), "points_notice", first),
        (date(2026, 1, 7), "care_d3", first),
        (date(2026, 1, 14), "care_d10", first),
        (date(2026, 2, 3), "care_d30", first),
        # three care messages and no purchase since: day 120 becomes the quarter's care
        (date(2026, 5, 4), "care_d120", "quarter:2026Q2"),
        # … and quarterly care goes on (day 211) until the dormant greeting
        (date(2026, 8, 3), "care_d120", "quarter:2026Q3"),
        (date(2026, 11, 6), "dormant", "since:2026-01-05"),
    ]
    # the member who came back in April still gets the first purchase's day 120
    got = [(p.planned_on, p.kind) for p in of(planned, back) if p.planned_on == date(2026, 5, 4)]
    assert got == [(date(2026, 5, 4), "care_d120")]
    occasions = {p.occasion for p in of(planned, back) if p.planned_on == date(2026, 5, 4)}
    assert all(o.startswith("purchase:") for o in occasions)


async def test_one_quarterly_care_per_quarter(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
        p1 = await buy(session, m, date(2026, 1, 5))
        for i, d in enumerate((date(2026, 1, 7), date(2026, 1, 14), date(2026, 2, 3))):
            await add_outbox(session, m, "care_d3", f"purchase:x{i}", d)
    planned = await plan(sessions, settings, date(2026, 2, 20))  # 3 care since the last purchase
    assert kinds(planned, m) == []
    async with sessions() as session, session.begin():
        m = await session.get(Member, m.id)
        await add_outbox(session, m, "care_d120", "quarter:2026Q2", date(2026, 4, 1))
    planned = await plan(sessions, settings, date(2026, 5, 4))
    quarter = one(planned, m, "care_d120")
    assert quarter.occasion == "quarter:2026Q2"
    assert kinds(planned, m) == ["care_d120"]  # not the purchase's own day-120 message
    assert p1.id
    async with sessions() as session, session.begin():
        result = await save_plan(session, planned=planned, now=NOW)
    assert (result.inserted, result.already) == (0, 1)


# --------------------------------------------------------------------------- saving


async def test_plan_and_save_twice_inserts_once(sessions, settings):
    day = date(2026, 9, 25)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        ms = [await member(session, store, helper) for _ in range(3)]
        await member(session, store, helper, stopped=True)
        await buy(session, ms[0], day - timedelta(days=1))
    async with sessions() as session, session.begin():
        planned = await plan_day(session, settings=settings, day=day)
        first = await save_plan(session, planned=planned, now=NOW)
    assert (first.inserted, first.already, first.suppressed, first.queued) == (5, 0, 1, 4)
    async with sessions() as session, session.begin():
        assert await pending_only(session, planned) == []
        planned_again = await plan_day(session, settings=settings, day=day)
        second = await save_plan(session, planned=planned_again, now=NOW)
    assert (second.inserted, second.already) == (0, 5)
    rows = await outbox_rows(sessions)
    assert len(rows) == 5
    assert sorted((r.status, r.reason) for r in rows).count(("suppressed", "stopped")) == 1
    async with sessions() as session:
        events = list(await session.exec(select(OutboxEvent)))
    assert sorted((e.message_id, e.from_status, e.to_status) for e in events) == sorted(
        (r.id, "planned", r.status) for r in rows
    )
    row = next(r for r in rows if r.kind == "points_notice")
    assert row.planned_on == day and row.send_after == local(day, 9) and row.channel == "sms"


async def test_pending_only_drops_what_is_already_in_the_outbox(sessions, settings):
    day = date(2026, 9, 25)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        a = await member(session, store, helper)
        b = await member(session, store, helper)
        await add_outbox(session, a, "holiday", "mid_autumn:2026", day)
        await add_outbox(session, b, "holiday", "mid_autumn:2025", date(2025, 10, 6))
    async with sessions() as session:
        planned = await plan_day(session, settings=settings, day=day)
        pending = await pending_only(session, planned)
    assert [p.member_id for p in planned] == [a.id, b.id]
    assert [p.member_id for p in pending] == [b.id]


async def test_two_concurrent_saves_store_each_message_once(sessions, settings):
    day = date(2026, 9, 25)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        for i in range(40):
            m = await member(session, store, helper)
            if i % 3 == 0:
                await buy(session, m, day - timedelta(days=1))
    async with sessions() as session:
        planned = await plan_day(session, settings=settings, day=day)
    assert len(planned) == 54

    async def save() -> SaveResult:
        async with sessions() as session, session.begin():
            return await save_plan(session, planned=planned, now=NOW, chunk_size=7)

    results = await asyncio.gather(save(), save())
    assert sorted(r.inserted for r in results) == [0, 54]
    assert sum(r.inserted for r in results) == 54
    assert sum(r.already for r in results) == 54
    async with sessions() as session:
        count = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
        events = (await session.exec(select(func.count()).select_from(OutboxEvent))).one()
    assert (count, events) == (54, 54)


@pytest.mark.parametrize("day", [date(2026, 9, 25), date(2026, 9, 26)])
async def test_save_day_writes_what_plan_day_and_save_plan_write(sessions, settings, day):
    """The pipelined daily save (batch k saved while k + 1 is composed) stores the same
    rows as planning the whole day and saving it, on an every-member day and another."""
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        for i in range(23):
            m = await member(session, store, helper, stopped=i % 7 == 0)
            if i % 3 == 0:
                await buy(session, m, date(2026, 9, 24))
            if i % 4 == 0:
                await buy(session, m, date(2026, 9, 23))

    def row(r: OutboxMessage) -> tuple:
        return (r.member_id, r.kind, r.occasion, r.text, r.status, r.reason, r.channel,
                r.send_after, r.store_id, r.assistant_id)  # fmt: skip

    async with sessions() as session:  # saved, looked at, rolled back
        await session.begin()
        expected = await save_plan(
            session, planned=await plan_day(session, settings=settings, day=day), now=NOW
        )
        want = sorted(row(r) for r in await session.exec(select(OutboxMessage)))
        await session.rollback()
    async with sessions() as session, session.begin():
        result = await planner.save_day(session, settings=settings, day=day, now=NOW, chunk_size=4)
    assert result == expected and result.inserted >= 8
    assert sorted(row(r) for r in await outbox_rows(sessions)) == want
    async with sessions() as session, session.begin():
        again = await planner.save_day(session, settings=settings, day=day, now=NOW, chunk_size=5)
    assert (again.inserted, again.already) == (0, expected.inserted)
    async with sessions() as session:
        events = (await session.exec(select(func.count()).select_from(OutboxEvent))).one()
    assert events == expected.inserted


async def test_a_failing_batch_stops_the_pipelined_plan_cleanly(sessions, settings, monkeypatch):
    """An error while composing waits for the read ahead, then surfaces; the session is
    still usable (no statement left running on it)."""
    day = date(2026, 9, 25)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        for _ in range(9):
            await member(session, store, helper)
    calls = 0
    real = planner.plan_member

    def flaky(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "plan_member", flaky)
    async with sessions() as session:
        with pytest.raises(RuntimeError, match="boom"):
            async for _batch in planner.iter_plan(
                session, settings=settings, day=day, chunk_size=3
            ):
                pass
        assert (await session.exec(select(func.count()).select_from(Member))).one() == 9


@pytest.mark.skipif(is_pg(), reason="the SQLite save writes driver values itself")
async def test_the_sqlite_save_stores_what_sqlalchemy_would(sessions, settings):
    """`save_plan` on SQLite formats dates and times itself: the stored values are the ones
    SQLAlchemy's own insert of the same rows stores (compared as the raw column values)."""
    from sqlalchemy import insert

    from scheduler.plan.plan_save import _OUTBOX_FIELDS

    day = date(2026, 9, 25)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        for i in range(9):
            m = await member(session, store, helper, stopped=i == 4)
            await buy(session, m, day - timedelta(days=1))
    raw = (
        "SELECT member_id, kind, occasion, planned_on, store_id, assistant_id, locale, text, "
        "channel, via, address, status, reason, send_after, attempts, created_at, updated_at "
        "FROM outbox ORDER BY member_id, kind, occasion"
    )
    events = "SELECT o.kind, o.member_id, e.from_status, e.to_status, e.at, e.reason FROM "
    events += "outbox_events e JOIN outbox o ON o.id = e.message_id ORDER BY 1, 2"
    now = datetime(2026, 9, 25, 0, 30, 15, 123456, tzinfo=ZoneInfo("Asia/Shanghai"))
    stored = []
    for way in ("planner", "sqlalchemy"):
        async with sessions() as session:
            await session.begin()
            planned = await plan_day(session, settings=settings, day=day)
            if way == "planner":
                await save_plan(session, planned=planned, now=now)
            else:
                stamps = {"attempts": 0, "created_at": now, "updated_at": now}
                rows = [{**{c: getattr(p, c) for c in _OUTBOX_FIELDS}, **stamps} for p in planned]
                await session.exec(insert(OutboxMessage.__table__), params=rows)
                ids = await session.exec(select(OutboxMessage.id, OutboxMessage.status,
                                                OutboxMessage.reason))  # fmt: skip
                await session.exec(
                    insert(OutboxEvent.__table__),
                    params=[{"message_id": i, "from_status": "planned", "to_status": st,
                             "at": now, "reason": why} for i, st, why in ids],
                )  # fmt: skip
            conn = await session.connection()
            stored.append(
                (
                    (await conn.exec_driver_sql(raw)).all(),
                    (await conn.exec_driver_sql(events)).all(),
                )
            )
            await session.rollback()
    assert len(stored[0][0]) == 18 and stored[0][0][0][13].endswith(".000000")
    assert stored[0] == stored[1]


# --------------------------------------------------------------------------- purity


async def _counts(session) -> dict[str, int]:
    out = {}
    for table in SQLModel.metadata.sorted_tables:
        out[table.name] = (await session.exec(text(f'SELECT count(*) FROM "{table.name}"'))).one()[
            0
        ]
    return out


async def test_plan_day_reads_no_clock_and_writes_nothing(sessions, settings, monkeypatch):
    day = date(2026, 9, 25)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, birthday_month=9, birthday_day=25)
        await buy(session, m, day - timedelta(days=1))
        session.add(Identity(member_id=m.id, channel="wechat", address="o1", last_inbound_at=NOW))

    class NoClock(datetime):
        @classmethod
        def now(cls, tz=None):
            raise AssertionError("the planner read the clock")

        @classmethod
        def utcnow(cls):
            raise AssertionError("the planner read the clock")

        @classmethod
        def today(cls):
            raise AssertionError("the planner read the clock")

    class NoToday(date):
        @classmethod
        def today(cls):
            raise AssertionError("the planner read the clock")

    import models.clock
    import models.occasions
    import models.types
    import scheduler.policy
    from scheduler.plan import (
        card_steps,
        care_calendar,
        occasion_due,
        plan_compose,
        plan_reads,
        plan_save,
        plan_types,
    )

    modules = (
        planner, care_calendar, occasion_due, card_steps, plan_reads, plan_compose, plan_save,
        plan_types, scheduler.policy, models.occasions, models.clock,
    )  # fmt: skip
    for module in modules:
        monkeypatch.setattr(module, "datetime", NoClock, raising=False)
        monkeypatch.setattr(module, "date", NoToday, raising=False)
    monkeypatch.setattr(models.types, "utcnow", lambda: (_ for _ in ()).throw(AssertionError))
    async with sessions() as session:
        before = await _counts(session)
    async with sessions() as session, session.begin():
        planned = await plan_day(session, settings=settings, day=day)
    assert sorted(p.kind for p in planned) == ["birthday", "holiday", "points_notice"]
    async with sessions() as session:
        assert await _counts(session) == before


async def test_save_plan_refuses_a_naive_now(sessions):
    async with sessions() as session:
        with pytest.raises(ValueError, match="naive"):
            await save_plan(session, planned=[], now=datetime(2026, 1, 1))


@pytest.mark.skipif(not is_pg(), reason="query plans are checked on PostgreSQL")
async def test_ordinary_day_queries_use_the_date_indexes(sessions, settings):
    """Every date-driven source is an index lookup (no sequential scan of members)."""
    async with sessions() as session, session.begin():
        await session.exec(text("SET LOCAL enable_seqscan = off"))
        plans = []
        for sql in (
            "SELECT id FROM members WHERE birthday_calendar='solar' AND birthday_month=5 "
            "AND birthday_day IN (20)",
            "SELECT id FROM members WHERE wedding_month=5 AND wedding_day IN (20)",
            "SELECT id FROM members WHERE join_date IN ('2025-05-20','2024-05-20')",
            "SELECT id FROM members WHERE last_purchase_at >= now() - interval '1 day'",
            "SELECT id FROM purchases WHERE local_date IN ('2026-05-19')",
            "SELECT member_id FROM points_lots WHERE remaining > 0 AND expires_on = '2026-05-27'",
        ):
            rows = await session.exec(text("EXPLAIN " + sql))
            plans.append(" ".join(r[0] for r in rows))
    for p in plans:
        assert "Index" in p, p
