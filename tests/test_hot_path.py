"""The chat bot's hot path — a bound member's "积分" (bench/bench_wechat.py measures it):
what it writes, how many statements it runs and which locks it takes, that the points
answer's one read (`models.tiers.facts`) gives the expiry `models.points_reads.expiring_soon`
gives, and that the quick path answers with the session path's text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlmodel import select

from bot.bot import MemberBot
from bot.conversation import Inbound
from models import points_reads
from models.db import transaction
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.rules import LoyaltyRules
from models.settings.load import load_settings
from models.tables.conversation import PendingAction
from models.tables.ledger import PointsLot
from models.tables.members import Identity, Member
from models.tiers.facts import read_points
from scheduler.send.providers import SentSms
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
        await bot.settle()  # a quick answer writes the stamp behind the reply

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
        await bot.settle()
        assert await stamp(sessions) == clock.now


# --------------------------------------------------------------------------- statements, locks


async def test_points_for_a_bound_member_take_two_reads_and_no_lock(
    make_settings, engine, sessions, member
):
    """The session path (taken when the quick path of `bot.quick` does not apply)."""
    settings = make_settings(points=CALENDAR_YEAR)
    await buy(sessions, settings.loyalty, "800", NOW - timedelta(days=40), "R1")
    clock = Clock(NOW)
    bot = MemberBot(
        settings=settings, sessions=sessions, sms_sender=NoSms(), clock=clock, quick=False
    )
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
async def test_the_read_gives_progress_and_the_separate_expiry(sessions, rules, sales):
    async with transaction(sessions) as s:
        await make_store(s)
    for i, (day, amount) in enumerate(sales):
        at = datetime.fromisoformat(day).replace(hour=12, tzinfo=TZ)
        await buy(sessions, rules, amount, at, f"R{i}")
    async with sessions() as s:
        member = (await s.exec(select(Member))).one()
        for today in (date(2026, 5, 10), date(2026, 6, 1), date(2026, 9, 20), date(2026, 12, 31)):
            found = await read_points(s, tiers=rules.tiers, member_id=member.id, today=today)
            expiry = await points_reads.expiring_soon(s, member_id=member.id, today=today)
            assert found.expiring == expiry, today
            assert found.progress is not None and found.progress.today == today
            lapsed = sum(
                lot.remaining
                for lot in (await s.exec(select(PointsLot))).all()
                if lot.remaining > 0 and lot.expires_on is not None and lot.expires_on < today
            )
            assert found.member.points == member.points - lapsed, today


async def test_progress_and_expiry_at_the_top_level(sessions):
    async with transaction(sessions) as s:
        await make_store(s)
        top = await make_member(s, phone=PHONE, tier="diamond")
    rules = LoyaltyRules(**{"points": CALENDAR_YEAR})
    await buy(sessions, rules, "1200", datetime(2026, 3, 1, 12, tzinfo=TZ), "R1")
    async with sessions() as s:
        found = await read_points(s, tiers=rules.tiers, member_id=top.id, today=date(2026, 6, 1))
    assert (found.progress, found.expiring) == (None, (1200, date(2026, 12, 31)))
    assert found.member.points == 1200


# --------------------------------------------------------------------------- the quick path

ON_APPROVAL = """
[points.expiry]
policy = "calendar_year"

[tiers]
scheme = "T"

[[tiers.levels]]
code = "points"
name = "积分卡"
name_en = "Points card"

[[tiers.levels]]
code = "gold"
name = "金卡"
name_en = "Gold card"
requires_card = true
effective = "on_approval"
[[tiers.levels.reach]]
measure = "points"
window = "half_year"
threshold = 1000

[[tiers.levels]]
code = "diamond"
name = "钻石卡"
name_en = "Diamond card"
requires_card = true
effective = "on_approval"
[[tiers.levels.reach]]
measure = "spend"
window = "month"
threshold = 20000
"""
"""Levels that take effect when the card is approved: the quick read also reads the
member's open card applications (a pending tier)."""


def scheme_settings(name: str, db_url: str, tmp_path: Path):
    overrides = {"database": {"url": db_url}}
    if name == "a":
        return load_settings(None, environ={}, overrides={**overrides, "points": CALENDAR_YEAR})
    if name == "on-approval":
        path = tmp_path / "on-approval.toml"
        path.write_text(ON_APPROVAL)
        return load_settings(path, environ={}, overrides=overrides)
    return load_settings(EXAMPLES / f"scheme-{name}.toml", environ={}, overrides=overrides)


SCHEME_SALES = {
    "a": [(-170, "900"), (-60, "1000"), (-3, "500")],
    "b": [(-50, "300"), (-20, "700")],
    "c": [(-40, "500"), (-2, "1000")],
    "on-approval": [(-100, "700"), (-10, "600")],
}


@pytest.mark.parametrize("scheme", ["a", "b", "c", "on-approval"])
async def test_the_quick_answer_is_the_session_answer(
    db_url, tmp_path, engine, sessions, member, scheme
):
    """Same text as the session path, for every scheme, language, birthday and pending
    tier; without a single SQLAlchemy statement when the rules allow it (scheme B
    counts cumulative spend: always the session path)."""
    settings = scheme_settings(scheme, db_url, tmp_path)
    for i, (days, amount) in enumerate(SCHEME_SALES[scheme]):
        await buy(sessions, settings.loyalty, amount, NOW + timedelta(days=days), f"R{i}")
    clock = Clock(NOW)
    quick = MemberBot(settings=settings, sessions=sessions, sms_sender=NoSms(), clock=clock)
    slow = MemberBot(
        settings=settings, sessions=sessions, sms_sender=NoSms(), clock=clock, quick=False
    )
    top = settings.loyalty.tiers.levels[-1].code
    variants = [
        {},
        {"locale": "en", "birthday_month": 11, "birthday_day": 25},  # NOW is the birthday
        {"tier": top},  # nothing above: no next tier
    ]
    seen = statements(engine)
    for changes in variants:
        async with transaction(sessions) as s:
            row = await s.get(Member, member.id)
            for key, value in changes.items():
                setattr(row, key, value)
        for days in (0, 45, 200):
            clock.now = NOW + timedelta(days=days)
            seen.clear()
            fast = await quick.handle(Inbound(channel="wechat", sender=OPENID, text="积分"))
            if scheme == "b":
                assert seen, "scheme B needs the session path"
            else:
                assert seen == [], seen
            expected = await slow.handle(Inbound(channel="wechat", sender=OPENID, text="积分"))
            assert fast == expected, (changes, days)
    await quick.settle()


async def test_an_unbound_or_inactive_openid_never_gets_member_data(
    settings, engine, sessions, member
):
    async with transaction(sessions) as s:
        s.add(Identity(member_id=None, channel="wechat", address="o_unbound"))
        s.add(Identity(member_id=member.id, channel="wechat", address="o_left", active=False))
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=NoSms(), clock=Clock(NOW))
    slow = MemberBot(
        settings=settings, sessions=sessions, sms_sender=NoSms(), clock=Clock(NOW), quick=False
    )
    for openid in ("o_unbound", "o_left", "o_never_seen"):
        reply = await bot.handle(Inbound(channel="wechat", sender=openid, text="积分"))
        assert reply.text.startswith("您好！绑定会员后"), reply.text
        assert member.name not in reply.text and " 分" not in reply.text
        assert reply == await slow.handle(Inbound(channel="wechat", sender=openid, text="积分"))
    async with sessions() as s:  # the unknown openid went the normal way: it is known now
        found = await s.exec(select(Identity).where(Identity.address == "o_never_seen"))
        assert found.one().member_id is None


async def test_a_pending_confirmation_is_cancelled_not_skipped(settings, sessions, member):
    """积分 while a redemption waits for 确认: the normal path cancels it (a write)."""
    async with transaction(sessions) as s:
        s.add(
            PendingAction(
                channel="wechat", sender=OPENID, member_id=member.id, kind="redeem",
                payload='{"reward": "R1"}', token="t" * 32, created_at=NOW,
                expires_at=NOW + timedelta(minutes=10),
            )
        )  # fmt: skip
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=NoSms(), clock=Clock(NOW))
    reply = await bot.handle(Inbound(channel="wechat", sender=OPENID, text="积分"))
    assert "取消" in reply.text.splitlines()[0], reply.text
    async with sessions() as s:
        assert (await s.exec(select(PendingAction))).all() == []


async def test_a_stamp_written_behind_never_moves_back(settings, sessions, member):
    clock = Clock(NOW)
    bot = MemberBot(
        settings=settings, sessions=sessions, sms_sender=NoSms(), clock=clock,
        touch_every=timedelta(0),
    )  # fmt: skip
    for seconds in (5, 2):  # two messages whose stamps reach the database out of order
        clock.now = NOW + timedelta(seconds=seconds)
        await bot.handle(Inbound(channel="wechat", sender=OPENID, text="积分"))
    await bot.settle()
    assert await stamp(sessions) == NOW + timedelta(seconds=5)
