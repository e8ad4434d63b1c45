"""scheduler.jobs, scheduler.service and bot.background: the daily run (claim, upkeep,
plan, card steps), catch-up, the APScheduler wiring and the birthday report — explicit
dates, both engines."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from lunardate import LunarDate
from sqlalchemy import text
from sqlmodel import func, select

from bot import appkeys, background
from bot.app import create_app
from models import voucher_till
from models.db import transaction
from models.ownership import assign
from models.points import post_points
from models.tables.cards import CardApplication
from models.tables.ledger import PointsLot, Voucher
from models.tables.members import Assistant, Member, Store
from models.tables.outbox import OutboxMessage, PlanRun
from scheduler import jobs, service
from scheduler.jobs import month_end_birthdays, run_daily, run_finished
from scheduler.send.transports import Transports
from scheduler.service import due_catch_up
from tests.conftest import is_pg

SH = ZoneInfo("Asia/Shanghai")
DAY = date(2027, 4, 1)
NOW = datetime(2027, 4, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
_phones = itertools.count(13700000001)


# --------------------------------------------------------------------------- data helpers


async def shop(session, code: str = "S1") -> tuple[Store, Assistant, Assistant]:
    store = Store(code=code, name="南京西路店", city="上海")
    session.add(store)
    await session.flush()
    a = Assistant(code=f"{code}-A", name="王丽", store_id=store.id)
    b = Assistant(code=f"{code}-B", name="陈静", store_id=store.id)
    session.add_all([a, b])
    await session.flush()
    return store, a, b


async def member(session, store: Store, helper: Assistant | None, **kw) -> Member:
    values = {
        "phone": f"+86{next(_phones)}",
        "name": "李娜",
        "store_id": store.id,
        "assistant_id": helper.id if helper else None,
        "join_date": date(2026, 6, 20),
        "tier": "points",
    }
    values.update(kw)
    m = Member(**values)
    session.add(m)
    await session.flush()
    return m


async def count(sessions, model) -> int:
    async with sessions() as s:
        return (await s.exec(select(func.count()).select_from(model))).one()


async def plan_run(sessions, day: date) -> PlanRun | None:
    async with sessions() as s:
        return (await s.exec(select(PlanRun).where(PlanRun.day == day))).first()


# --------------------------------------------------------------------------- the daily run


async def test_run_daily_plans_once_and_the_second_run_does_nothing(sessions, settings):
    async with transaction(sessions) as s:
        store, a, _ = await shop(s)
        m = await member(s, store, a, birthday_month=4, birthday_day=1)
    first = await run_daily(sessions, settings=settings, day=DAY, now=NOW, replica="r1")
    assert first is not None and first.failed == []
    assert (first.queued, first.suppressed) == (1, 0)
    async with sessions() as s:
        msg = (await s.exec(select(OutboxMessage))).one()
    assert (msg.member_id, msg.kind, msg.occasion, msg.status) == (
        m.id,
        "birthday",
        "2027",
        "queued",
    )
    run = await plan_run(sessions, DAY)
    assert (run.finished_at, run.planned, run.suppressed, run.replica) == (NOW, 1, 0, "r1")

    later = NOW + timedelta(hours=2)
    assert await run_daily(sessions, settings=settings, day=DAY, now=later) is None
    assert await count(sessions, OutboxMessage) == 1
    assert (await plan_run(sessions, DAY)).finished_at == NOW


async def test_two_concurrent_runs_one_plans_the_other_returns_none(sessions, settings):
    async with transaction(sessions) as s:
        store, a, _ = await shop(s)
        for _ in range(3):
            await member(s, store, a, birthday_month=4, birthday_day=1)
    results = await asyncio.gather(
        run_daily(sessions, settings=settings, day=DAY, now=NOW, replica="r1"),
        run_daily(sessions, settings=settings, day=DAY, now=NOW, replica="r2"),
    )
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].queued == 3
    assert await count(sessions, OutboxMessage) == 3
    assert await count(sessions, PlanRun) == 1


@pytest.mark.skipif(not is_pg(), reason="the advisory lock is PostgreSQL's")
async def test_another_replica_holding_the_advisory_lock_wins(sessions, settings, engine):
    async with engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": jobs.PLAN_LOCK})
        assert await run_daily(sessions, settings=settings, day=DAY, now=NOW) is None
        await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": jobs.PLAN_LOCK})
        await other.commit()
    assert await plan_run(sessions, DAY) is None
    assert await run_daily(sessions, settings=settings, day=DAY, now=NOW) is not None


@pytest.mark.parametrize(
    ("age", "taken_over"), [(timedelta(minutes=31), True), (timedelta(minutes=10), False)]
)
async def test_an_unfinished_run_is_taken_over_only_when_stale(sessions, settings, age, taken_over):
    async with transaction(sessions) as s:
        s.add(PlanRun(day=DAY, started_at=NOW - age, replica="dead"))
    result = await run_daily(sessions, settings=settings, day=DAY, now=NOW, replica="r2")
    assert (result is not None) is taken_over
    run = await plan_run(sessions, DAY)
    assert run.replica == ("r2" if taken_over else "dead")
    assert (run.finished_at is not None) is taken_over


async def test_each_upkeep_step_takes_effect(sessions, settings):
    async with transaction(sessions) as s:
        store, a, b = await shop(s)
        # points: a lot whose last day was yesterday
        saver = await member(s, store, a)
        await post_points(
            s, rules=settings.points, member_id=saver.id, delta=50, reason="purchase",
            key="lot-1", at=NOW - timedelta(days=400), local_date=date(2026, 3, 1),
        )  # fmt: skip
        lot = (await s.exec(select(PointsLot).where(PointsLot.member_id == saver.id))).one()
        lot.expires_on = DAY - timedelta(days=1)
        s.add(lot)
        # a voucher past its last day
        s.add(
            Voucher(
                code="V1", member_id=saver.id, reward_code="r300", value=Decimal("300"),
                issued_at=NOW - timedelta(days=90), expires_on=DAY - timedelta(days=1),
                redemption_key="redeem-1",
            )
        )  # fmt: skip
        # ownership: opened 31 Jan, probation to 31 Mar, no purchase
        idle = await member(s, store, a)
        await assign(
            s, rules=settings.loyalty, member=idle, assistant_id=a.id, on=date(2027, 1, 31)
        )
        # a card: notified, the agreed pickup day (30 Mar) was missed
        card_owner = await member(s, store, a)
        app = CardApplication(
            member_id=card_owner.id, tier="silver", status="notified", store_id=store.id,
            assistant_id=a.id, pickup_date=date(2027, 3, 30),
        )  # fmt: skip
        s.add(app)
    result = await run_daily(sessions, settings=settings, day=DAY, now=NOW)
    assert result is not None and result.failed == []
    assert result.upkeep["expire_points"] == 50
    assert result.upkeep["expire_vouchers"] == 1
    assert result.upkeep["redistribute"] == 1
    assert result.upkeep["card_steps"] == 1
    async with sessions() as s:
        assert (await s.get(Member, saver.id)).points == 0
        assert (await s.exec(select(Voucher.status))).one() == "expired"
        assert (await s.get(Member, idle.id)).assistant_id == b.id
        assert (await s.get(CardApplication, app.id)).status == "notified_again"
        kinds = (
            await s.exec(select(OutboxMessage.kind).where(OutboxMessage.member_id == card_owner.id))
        ).all()
    assert kinds == ["card_pickup_again"]


async def test_a_failing_step_is_logged_and_the_others_still_run(
    sessions, settings, monkeypatch, caplog
):
    async with transaction(sessions) as s:
        store, a, _ = await shop(s)
        await member(s, store, a, birthday_month=4, birthday_day=1)

    async def broken(session, *, today, now):
        raise RuntimeError("voucher table on fire")

    monkeypatch.setattr(voucher_till, "expire_vouchers", broken)
    result = await run_daily(sessions, settings=settings, day=DAY, now=NOW)
    assert result.failed == ["expire_vouchers"]
    assert result.queued == 1 and "review_tiers" in result.upkeep and "card_steps" in result.upkeep
    assert (await plan_run(sessions, DAY)).finished_at == NOW
    assert "voucher table on fire" in caplog.text


async def test_a_failed_plan_leaves_the_run_unfinished_for_a_later_takeover(
    sessions, settings, monkeypatch
):
    async def broken(session, *, settings, day, now):
        raise RuntimeError("planner down")

    monkeypatch.setattr(jobs, "save_day", broken)  # the job plans and saves through it
    result = await run_daily(sessions, settings=settings, day=DAY, now=NOW)
    assert "plan" in result.failed and not result.finished
    run = await plan_run(sessions, DAY)
    assert run is not None and run.finished_at is None
    async with sessions() as s:
        assert not await run_finished(s, day=DAY)


# --------------------------------------------------------------------------- catch-up


@pytest.mark.parametrize(
    ("clock", "finished", "due"),
    [
        (time(7, 59), False, False),  # before plan_at: the scheduler will run it
        (time(8, 0), False, True),
        (time(23, 30), False, True),  # late the same day: still today's
        (time(9, 0), True, False),  # already run today
    ],
)
def test_due_catch_up(clock, finished, due):
    now_local = datetime.combine(date(2027, 4, 1), clock, tzinfo=SH)
    assert due_catch_up(now_local, time(8, 0), finished) is due


async def test_catch_up_on_start_runs_today_only(aiohttp_client, settings, sessions):
    """Started at 10:00 brand time on 1 April with no run yet: 1 April is planned at
    once; the run missed on 31 March (the service was down) is not."""
    app = create_app(settings)
    app[appkeys.CLOCK] = lambda: datetime(2027, 4, 1, 2, 0, tzinfo=UTC)
    app[appkeys.TRANSPORTS] = Transports()  # nothing to send on
    background.setup(app)
    await aiohttp_client(app)
    await app[appkeys.CATCH_UP]
    assert (await plan_run(sessions, DAY)).finished_at is not None
    assert await plan_run(sessions, DAY - timedelta(days=1)) is None


async def test_scheduler_starts_with_the_job_in_brand_time_and_stops(aiohttp_client, make_settings):
    settings = make_settings(brand={"timezone": "America/New_York"}, scheduler={"plan_at": "07:45"})
    app = create_app(settings)
    app[appkeys.CLOCK] = lambda: datetime(2027, 4, 1, 10, 0, tzinfo=UTC)  # 06:00 in New York
    app[appkeys.TRANSPORTS] = Transports()
    background.setup(app)
    client = await aiohttp_client(app)
    scheduler = app[appkeys.SCHEDULER]
    assert scheduler.running
    job = scheduler.get_job(background.DAILY_JOB_ID)
    assert isinstance(job.trigger, CronTrigger)
    assert str(job.trigger.timezone) == "America/New_York"
    assert str(job.trigger) == "cron[hour='7', minute='45']"
    assert appkeys.CATCH_UP not in app  # before plan_at: nothing to catch up
    sender_task = [t for t in asyncio.all_tasks() if t.get_name() == "outbox-sender"]
    assert len(sender_task) == 1
    await client.close()
    assert not scheduler.running
    assert sender_task[0].done()


async def test_disabled_scheduler_still_runs_the_sender(aiohttp_client, make_settings):
    app = create_app(make_settings(scheduler={"enabled": False}), background=True)
    app[appkeys.CLOCK] = lambda: datetime(2027, 4, 1, 12, 0, tzinfo=UTC)
    await aiohttp_client(app)
    assert appkeys.SCHEDULER not in app and appkeys.CATCH_UP not in app
    assert "console" in app[appkeys.SENDER]._transports.channels()
    assert [t for t in asyncio.all_tasks() if t.get_name() == "outbox-sender"]


def test_check_templates_accepts_the_built_in_templates_and_refuses_a_bad_one(settings, tmp_path):
    import shutil

    from scheduler.render import MESSAGES_DIR

    assert service.check_templates(settings) > 0
    shutil.copytree(MESSAGES_DIR, tmp_path / "messages")
    bad = tmp_path / "messages" / "zh_CN" / "birthday.txt"
    bad.write_text("全场8折优惠！\n" + bad.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(service.TemplateRuleError, match="promotion_in_greeting"):
        service.check_templates(settings, template_dir=tmp_path / "messages")


# --------------------------------------------------------------------------- birthdays report


async def test_month_end_birthdays_resolves_lunar_and_29_february(sessions, settings):
    lunar_dec = LunarDate.from_solar_date(2026, 12, 10)
    assert not lunar_dec.is_leap_month
    async with transaction(sessions) as s:
        store, a, _ = await shop(s)
        other, c, _ = await shop(s, code="S2")
        other.name = "淮海路店"
        solar = await member(
            s, store, a, name="张三", phone="+8613800138000", birthday_month=12, birthday_day=5
        )
        lunar = await member(
            s, other, c, name="李四", birthday_calendar="lunar",
            birthday_month=lunar_dec.month, birthday_day=lunar_dec.day,
        )  # fmt: skip
        await member(s, store, a, name="王五", birthday_month=11, birthday_day=30)
        await member(s, store, None, name="赵六", birthday_month=2, birthday_day=29, stopped=True)
        s.add(other)
    async with sessions() as s:
        december = await month_end_birthdays(s, settings=settings, month=date(2026, 12, 1))
        february = await month_end_birthdays(s, settings=settings, month=date(2027, 2, 1))
    assert [(r.store, r.member, r.birthday, r.calendar, r.assistant) for r in december] == [
        ("南京西路店", "张三", date(2026, 12, 5), "solar", "王丽"),
        ("淮海路店", "李四", date(2026, 12, 10), "lunar", "王丽"),
    ]
    assert december[0].phone == "+86138****8000"
    assert [(r.member, r.birthday, r.assistant, r.stopped) for r in february] == [
        ("赵六", date(2027, 2, 28), "", True)
    ]
    assert solar.id and lunar.id


async def test_an_unfinished_run_is_retried_until_taken_over_but_never_on_another_day(
    aiohttp_client, settings, sessions, monkeypatch
):
    """Restarted at 08:10 while the run a dead process started at 08:05 is unfinished:
    the catch-up looks again until the run is stale, then takes it over. Each clock
    read advances 10 minutes; RETRY_EVERY is 0 so the loop does not wait."""
    monkeypatch.setattr(background, "RETRY_EVERY", timedelta(0))
    async with transaction(sessions) as s:
        s.add(PlanRun(day=DAY, started_at=NOW + timedelta(minutes=5), replica="dead"))
    reads = itertools.count()
    app = create_app(settings)
    app[appkeys.CLOCK] = lambda: NOW + timedelta(minutes=10 * (1 + next(reads)))
    app[appkeys.TRANSPORTS] = Transports()
    background.setup(app)
    await aiohttp_client(app)
    await app[appkeys.CATCH_UP]
    run = await plan_run(sessions, DAY)
    assert run.finished_at is not None and run.replica != "dead"
    assert run.started_at - (NOW + timedelta(minutes=5)) > jobs.STALE_AFTER


async def test_a_retry_stops_when_the_day_is_over(aiohttp_client, settings, sessions, monkeypatch):
    monkeypatch.setattr(background, "RETRY_EVERY", timedelta(0))
    late = datetime(2027, 4, 1, 15, 50, tzinfo=UTC)  # 23:50 in Shanghai
    async with transaction(sessions) as s:
        s.add(PlanRun(day=DAY, started_at=late - timedelta(minutes=1), replica="busy"))
    reads = itertools.count()
    app = create_app(settings)
    app[appkeys.CLOCK] = lambda: late + timedelta(minutes=5 * next(reads))
    app[appkeys.TRANSPORTS] = Transports()
    background.setup(app)
    await aiohttp_client(app)
    await app[appkeys.CATCH_UP]
    run = await plan_run(sessions, DAY)
    assert (run.replica, run.finished_at) == ("busy", None)  # never taken over on 2 April
    assert await plan_run(sessions, DAY + timedelta(days=1)) is None
