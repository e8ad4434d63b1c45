"""The chat bot's hot path — a bound member's "积分" (bench/bench_wechat.py measures it):
what it writes, how many statements it runs and which locks it takes, and that
`models.tiers.tier_progress_and_expiry` answers exactly what `tier_progress` and
`models.points.expiring_soon` answer separately."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlmodel import select

from bot.bot import MemberBot
from bot.config import load_settings
from bot.conversation import Inbound
from bot.sms_sender import SentSms
from models import points, tiers
from models.db import transaction
from models.purchases import PurchaseIn, record_purchase
from models.rules import LoyaltyRules
from models.tables import Identity, Member
from tests.factories import make_member, make_store

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")
PHONE = "+8613800138000"
OPENID = "oWX-hot-path"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CALENDAR_YEAR = {"expiry": {"policy": "calendar_year"}}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class NoSms:
    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SentSms:
        raise AssertionError("the hot path sends no SMS")


async def buy(sessions, rules: LoyaltyRules, amount: str, at: datetime, receipt: str) -> None:
    async with transaction(sessions) as s:
        data = PurchaseIn(
            receipt_no=receipt, phone=PHONE, store="S001", amount=Decimal(amount), at=at
        )
        await record_purchase(s, rules=rules, tz=TZ, data=data)


@pytest.fixture
async def member(sessions) -> Member:
    """A member bound to OPENID (and known by SMS), with no purchases yet."""
    async with transaction(sessions) as s:
        m = await make_member(s, phone=PHONE, store=await make_store(s))
        s.add(Identity(member_id=m.id, channel="wechat", address=OPENID))
        s.add(Identity(member_id=m.id, channel="sms", address=PHONE))
    return m


async def stamp(sessions, channel: str = "wechat") -> datetime | None:
    async with sessions() as s:
        row = await s.exec(select(Identity.last_inbound_at).where(Identity.channel == channel))
        return row.one()


def statements(engine) -> list[str]:
    """Every data statement the engine runs from now on (BEGIN/COMMIT left out)."""
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(conn, cursor, statement, *args):
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    return seen


# --------------------------------------------------------------------------- last_inbound_at


@pytest.mark.parametrize("channel", ["wechat", "sms"])
async def test_last_inbound_at_is_rewritten_once_it_is_a_minute_old(
    settings, sessions, member, channel
):
    clock = Clock(NOW)
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=NoSms(), clock=clock)
    sender = OPENID if channel == "wechat" else PHONE

    async def say(text: str) -> None:
        await bot.handle(Inbound(channel=channel, sender=sender, text=text))

    await say("积分")
    assert await stamp(sessions, channel) == NOW
    clock.now = NOW + timedelta(seconds=59)
    await say("帮助")
    assert await stamp(sessions, channel) == NOW  # within the minute: no write
    clock.now = NOW + timedelta(seconds=60)
    await say("积分")
    assert await stamp(sessions, channel) == NOW + timedelta(seconds=60)


async def test_touch_every_zero_rewrites_it_on_every_message(settings, sessions, member):
    clock = Clock(NOW)
    bot = MemberBot(
        settings=settings,
        sessions=sessions,
        sms_sender=NoSms(),
        clock=clock,
        touch_every=timedelta(0),
    )
    for seconds in (0, 1, 2):
        clock.now = NOW + timedelta(seconds=seconds)
        await bot.handle(Inbound(channel="wechat", sender=OPENID, text="积分"))
        assert await stamp(sessions) == clock.now


# --------------------------------------------------------------------------- statements, locks


async def test_points_for_a_bound_member_take_two_reads_and_no_lock(
    make_settings, engine, sessions, member
):
    settings = make_settings(points=CALENDAR_YEAR)
    await buy(sessions, settings.loyalty, "800", NOW - timedelta(days=40), "R1")
    clock = Clock(NOW)
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=NoSms(), clock=clock)
    seen = statements(engine)
    reply = await bot.handle(Inbound(channel="wechat", sender=OPENID, text="积分"))
    assert "800 分" in reply.text and "2026年12月31日" in reply.text
    assert [s.split(None, 1)[0] for s in seen] == ["SELECT", "UPDATE", "SELECT"]  # stamp: new
    seen.clear()
    clock.now = NOW + timedelta(seconds=5)
    reply_again = await bot.handle(Inbound(channel="wechat", sender=OPENID, text="JF"))
    assert reply_again.text == reply.text
    assert len(seen) == 2 and all(s.lstrip().startswith("SELECT") for s in seen)
    assert not any("FOR UPDATE" in s for s in seen)


async def test_a_changing_message_locks_the_sender_on_postgresql(
    engine, settings, sessions, member
):
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=NoSms(), clock=Clock(NOW))
    seen = statements(engine)
    await bot.handle(Inbound(channel="wechat", sender=OPENID, text="兑换 1"))
    locked = [s for s in seen if "FOR UPDATE" in s]
    if engine.dialect.name == "postgresql":
        assert locked and "identities" in locked[0]
    else:
        assert locked == []  # SQLite: BEGIN IMMEDIATE already serialises every transaction


# --------------------------------------------------------------------------- progress + expiry


@pytest.mark.parametrize(
    ("rules", "sales"),
    [
        # Scheme A (half-year points windows), points expiring each 31 December
        (
            LoyaltyRules(**{"points": CALENDAR_YEAR}),
            [("2025-12-20", "900"), ("2026-03-01", "1000"), ("2026-05-10", "500")],
        ),
        # Scheme B: a class-C member's next level has no calendar window (cumulative spend
        # or one big receipt), so only the expiry is read
        (
            load_settings(EXAMPLES / "scheme-b.toml", environ={}).loyalty,
            [("2026-04-01", "300"), ("2026-05-01", "700")],
        ),
        # Scheme C: day, month and period windows
        (
            load_settings(EXAMPLES / "scheme-c.toml", environ={}).loyalty,
            [("2026-09-03", "500"), ("2026-09-20", "1000")],
        ),
    ],
    ids=["scheme-a", "scheme-b", "scheme-c"],
)
async def test_progress_and_expiry_match_the_separate_answers(sessions, rules, sales):
    async with transaction(sessions) as s:
        await make_store(s)
    for i, (day, amount) in enumerate(sales):
        at = datetime.fromisoformat(day).replace(hour=12, tzinfo=TZ)
        await buy(sessions, rules, amount, at, f"R{i}")
    async with sessions() as s:
        member = (await s.exec(select(Member))).one()
        for today in (date(2026, 5, 10), date(2026, 6, 1), date(2026, 9, 20), date(2026, 12, 31)):
            both = await tiers.tier_progress_and_expiry(s, rules=rules, member=member, today=today)
            progress = await tiers.tier_progress(s, rules=rules, member=member, today=today)
            expiry = await points.expiring_soon(s, member_id=member.id, today=today)
            assert both == (progress, expiry), today
            assert progress is not None


async def test_progress_and_expiry_at_the_top_level(sessions):
    async with transaction(sessions) as s:
        await make_store(s)
        top = await make_member(s, phone=PHONE, tier="diamond")
    rules = LoyaltyRules(**{"points": CALENDAR_YEAR})
    await buy(sessions, rules, "1200", datetime(2026, 3, 1, 12, tzinfo=TZ), "R1")
    async with sessions() as s:
        found = await tiers.tier_progress_and_expiry(
            s, rules=rules, member=await s.get(Member, top.id), today=date(2026, 6, 1)
        )
    assert found == (None, (1200, date(2026, 12, 31)))
