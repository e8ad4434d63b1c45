"""Occasions due on a day: birthdays, anniversaries, festivals, seasons, dormancy, expiry.

The calendar rules are pure functions of the day (`models.calendar.yearly_days_on` and
`yearly_days_between`, `join_dates`, `dormant_range`; documented in `scheduler.plan.planner`);
each source turns them into one indexed read of the members (or points lots) whose
occasion it is and adds a `Due` per member. `every_member` gives the holiday
and seasonal greetings that go to every member.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import and_, func, or_, text
from sqlmodel import col, select

from models.auto_vouchers import AUTO_PREFIX
from models.calendar import LUNAR, SOLAR, yearly_days_between, yearly_days_on
from models.clock import add_months, day_start, local_date
from models.occasions import festivals_on, season_start_on
from models.tables.ledger import PointsLot, Voucher
from models.tables.members import DORMANT_PENDING, Member
from scheduler.plan.plan_reads import rows
from scheduler.plan.plan_types import Due, PlanDay

JOIN_YEARS_BACK = 100
"""Join anniversaries are looked up for join dates up to this many years back."""


def join_dates(day: date, years: int = JOIN_YEARS_BACK) -> dict[date, int]:
    """Join dates whose anniversary falls on `day`, with the anniversary's number."""
    out: dict[date, int] = {}
    for month, dom in yearly_days_on(day, SOLAR):
        for year in range(day.year - years, day.year):
            try:
                out[date(year, month, dom)] = day.year - year
            except ValueError:
                continue
    return out


def dormant_range(day: date, months: int) -> tuple[date, date]:
    """[first, end) of the last-purchase days that turn dormant on `day`: the last
    purchase is more than `months` months before `day` but was not the day before."""
    return add_months(day - timedelta(days=1), -months), add_months(day, -months)


# --------------------------------------------------------------------------- sources


def every_member(plan: PlanDay) -> list[Due]:
    """The holiday and seasonal greetings due on the day (for every member)."""
    out: list[Due] = []
    occasions = plan.settings.occasions
    festivals = festivals_on(plan.day, occasions.festival_rules())
    if festivals:
        f = festivals[0]  # one holiday greeting a day, the first listed festival
        out.append(Due("holiday", f"{f.code}:{plan.day.year}", data=f))
    season = season_start_on(plan.day, terms=occasions.season_terms, tz=plan.tz)
    if season is not None:
        out.append(Due("seasonal", f"{season.code}:{plan.day.year}", data=season))
    return out


async def birthdays(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    conditions = []
    for calendar in (SOLAR, LUNAR):
        for month, days in yearly_days_between(plan.day, plan.day, calendar).items():
            conditions.append(
                and_(
                    Member.birthday_calendar == calendar,
                    Member.birthday_month == month,
                    col(Member.birthday_day).in_(days),
                )
            )
    if not conditions:
        return
    occasion = str(plan.day.year)
    for (member_id,) in await rows(plan, select(Member.id).where(or_(*conditions))):
        due[member_id].append(Due("birthday", occasion))


async def weddings(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    conditions = [
        and_(Member.wedding_month == month, col(Member.wedding_day).in_(days))
        for month, days in yearly_days_between(plan.day, plan.day, SOLAR).items()
    ]
    stmt = select(Member.id, Member.wedding_year).where(or_(*conditions))
    occasion = str(plan.day.year)
    for member_id, year in await rows(plan, stmt):
        if year is not None and year >= plan.day.year:
            continue  # the wedding day itself, or a date in the future: no anniversary
        years = plan.day.year - year if year else None
        due[member_id].append(Due("wedding_anniversary", occasion, data=years))


async def join_anniversaries(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    wanted = join_dates(plan.day)
    stmt = select(Member.id, Member.join_date).where(col(Member.join_date).in_(list(wanted)))
    occasion = str(plan.day.year)
    for member_id, joined in await rows(plan, stmt):
        due[member_id].append(Due("join_anniversary", occasion, data=wanted[joined]))


def dormant_query(bought_before: datetime):
    """(member id, last purchase) of the members whose last purchase is before
    `bought_before` and whose ``dormant`` greeting is not recorded for it (`dormant`)."""
    return select(Member.id, Member.last_purchase_at).where(
        col(Member.last_purchase_at) < bought_before, text(DORMANT_PENDING)
    )


async def dormant(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    """Members whose last purchase is more than ``dormant_months`` months before the day
    and whose ``dormant`` greeting is not recorded for it yet (``members.dormant_noted_at``,
    set by `scheduler.plan.plan_save.save_plan`): due on every day until it is recorded, so a
    member imported long dormant, or a day the planner did not run, is still greeted. Read
    through the partial index ``ix_members_dormant_due``, which holds only the members not
    yet greeted for their last purchase: the cost follows the greetings due."""
    _first, end = dormant_range(plan.day, plan.msg.dormant_months)
    for member_id, last in await rows(plan, dormant_query(day_start(end, plan.tz))):
        since = local_date(last, plan.tz)
        due[member_id].append(Due("dormant", f"since:{since.isoformat()}", data=last))


async def points_expiry(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    expires = plan.day + timedelta(days=plan.msg.points_expiry_notice_days)
    stmt = (
        select(PointsLot.member_id, func.sum(PointsLot.remaining))
        .where(PointsLot.remaining > 0, PointsLot.expires_on == expires)
        .group_by(PointsLot.member_id)
    )
    occasion = f"lots:{expires.isoformat()}"
    for member_id, points in await rows(plan, stmt):
        due[member_id].append(Due("points_expiry", occasion, data=(int(points), expires)))


async def voucher_expiry(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    """Unused vouchers whose last day is D + ``voucher_expiry_notice_days``, per member."""
    expires = plan.day + timedelta(days=plan.msg.voucher_expiry_notice_days)
    stmt = (
        select(Voucher.member_id, Voucher.code)
        .where(Voucher.status == "issued", Voucher.expires_on == expires)
        .order_by(Voucher.member_id, Voucher.code)
    )
    codes: dict[int, list[str]] = {}
    for member_id, code in await rows(plan, stmt):
        codes.setdefault(member_id, []).append(code)
    occasion = f"vouchers:{expires.isoformat()}"
    for member_id, held in codes.items():
        due[member_id].append(Due("voucher_expiry", occasion, data=(held, expires)))


async def voucher_issued(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    """Automatic vouchers (`models.auto_vouchers`) issued on the brand day before D."""
    day = plan.day - timedelta(days=1)
    stmt = (
        select(Voucher.member_id, Voucher.code, Voucher.expires_on)
        .where(
            col(Voucher.redemption_key).startswith(AUTO_PREFIX),
            Voucher.issued_at >= day_start(day, plan.tz),
            Voucher.issued_at < day_start(plan.day, plan.tz),
        )
        .order_by(Voucher.id)
    )
    for member_id, code, expires in await rows(plan, stmt):
        due[member_id].append(Due("voucher_issued", f"voucher:{code}", data=([code], expires)))
