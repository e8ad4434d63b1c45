"""models/tiers/: windows, Schemes A/B/C upgrades, review at expiry, progress (DOMAIN.md §3).

Purchases go through `models.purchases.record_purchase`, so the purchase → points →
tier hook runs end to end. Amounts are yuan at 1 point per yuan, brand time zone
Asia/Shanghai, every date explicit.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from models import card_reads, cards
from models.calendar import month_bounds
from models.db import transaction
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.rules import LoyaltyRules, TierRule, TierRules
from models.settings.load import load_settings
from models.tables.cards import CardApplication
from models.tables.ledger import TierChange
from models.tables.members import Member, Store
from models.tables.purchases import Purchase
from models.tiers.facts import read_points
from models.tiers.review import review_tiers, review_upgrades
from models.tiers.upgrade import eligible_not_applied, evaluate_after_purchase
from models.tiers.windows import (
    half_year_window,
    leaves_half_year_on,
    period_window,
    validity_window,
    window_span,
)
from tests.factories import make_member, make_store

TZ = ZoneInfo("Asia/Shanghai")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PHONE = "+8613800138000"
A = LoyaltyRules()
B = load_settings(EXAMPLES / "scheme-b.toml", environ={}).loyalty
C_AS_SHIPPED = load_settings(EXAMPLES / "scheme-c.toml", environ={}).loyalty
"""004 as shipped: WE and SVIP take effect at the August review (`on_review`)."""


def _at_once(rules: LoyaltyRules) -> LoyaltyRules:
    levels = [
        lv.model_copy(update={"effective": "on_eligible"}) if lv.effective == "on_review" else lv
        for lv in rules.tiers.levels
    ]
    return rules.model_copy(update={"tiers": rules.tiers.model_copy(update={"levels": levels})})


C = _at_once(C_AS_SHIPPED)
"""The same scheme with upgrades at once: the reach and renewal tests below judge those
rules on their own, without waiting for a review day."""
_receipts = itertools.count(1)


async def buy(
    session, rules: LoyaltyRules, amount: str | int, on: date, *, phone: str = PHONE, hour=12
) -> Purchase:
    data = PurchaseIn(
        receipt_no=f"R{next(_receipts):05d}",
        phone=phone,
        store="S001",
        amount=Decimal(str(amount)),
        at=datetime(on.year, on.month, on.day, hour, tzinfo=TZ),
    )
    purchase, created = await record_purchase(session, rules=rules, tz=TZ, data=data)
    assert created
    return purchase


async def member_of(session, phone: str = PHONE) -> Member:
    return (await session.exec(select(Member).where(Member.phone == phone))).one()


async def changes(session, member: Member) -> list[tuple[str, str, str, date]]:
    rows = await session.exec(
        select(TierChange).where(TierChange.member_id == member.id).order_by(col(TierChange.id))
    )
    return [(c.reason, c.from_tier, c.to_tier, c.on) for c in rows]


async def applications(session, member: Member) -> list[tuple[str, str]]:
    rows = await session.exec(
        select(CardApplication)
        .where(CardApplication.member_id == member.id)
        .order_by(col(CardApplication.id))
    )
    return [(a.tier, a.status) for a in rows]


def with_reach(rules: LoyaltyRules, code: str, *reach: TierRule) -> LoyaltyRules:
    """A copy of `rules` where tier `code` is reached only by `reach`."""
    levels = [
        lv.model_copy(update={"reach": list(reach)}) if lv.code == code else lv
        for lv in rules.tiers.levels
    ]
    return rules.model_copy(update={"tiers": rules.tiers.model_copy(update={"levels": levels})})


@pytest.fixture
async def session(sessions):
    async with transaction(sessions) as s:
        await make_store(s, code="S001")
        yield s


# --------------------------------------------------------------------------- windows (pure)


def test_half_year_is_six_calendar_months_ending_on_the_day():
    assert half_year_window(date(2026, 8, 15)) == (date(2026, 2, 16), date(2026, 8, 15))
    assert half_year_window(date(2026, 8, 31)) == (date(2026, 3, 1), date(2026, 8, 31))
    assert half_year_window(date(2027, 2, 28)) == (date(2026, 8, 29), date(2027, 2, 28))


def test_a_day_leaves_the_half_year_window_on_the_first_day_not_covering_it():
    assert leaves_half_year_on(date(2026, 3, 1)) == date(2026, 9, 1)
    # Month-end clamping: 29, 30 and 31 August all stop counting on 1 March.
    for d in (29, 30, 31):
        assert leaves_half_year_on(date(2026, 8, d)) == date(2027, 3, 1)
    assert half_year_window(date(2027, 2, 28))[0] <= date(2026, 8, 29)


def test_month_period_and_validity_windows():
    assert month_bounds(date(2026, 2, 10)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_window(date(2026, 3, 10), "08-01") == (date(2025, 8, 1), date(2026, 7, 31))
    assert period_window(date(2026, 8, 1), "08-01") == (date(2026, 8, 1), date(2027, 7, 31))
    assert period_window(date(2026, 7, 31), "08-01") == (date(2025, 8, 1), date(2026, 7, 31))
    assert period_window(date(2026, 5, 5), "01-01") == (date(2026, 1, 1), date(2026, 12, 31))
    assert validity_window(date(2027, 9, 10), 12) == (date(2026, 9, 10), date(2027, 9, 9))
    assert window_span("cumulative", date(2026, 5, 5), period_start="01-01") == (None, None)
    assert window_span("day", date(2026, 5, 5), period_start="01-01") == (
        date(2026, 5, 5),
        date(2026, 5, 5),
    )
    with pytest.raises(ValueError):
        window_span("validity", date(2026, 5, 5), period_start="01-01")


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("name", ["scheme-a.toml", "scheme-b.toml", "scheme-c.toml"])
def test_example_schemes_load_through_the_settings(name):
    settings = load_settings(EXAMPLES / name, environ={})
    assert settings.tiers.scheme == name[7].upper()
    assert len(settings.tiers.levels) >= 3


def test_scheme_a_example_is_the_default():
    assert load_settings(EXAMPLES / "scheme-a.toml", environ={}).tiers == TierRules()


def test_scheme_b_and_c_shapes():
    assert [lv.code for lv in B.tiers.levels] == ["class_c", "silver", "gold"]
    silver = B.tiers.find("silver")
    assert (silver.apply, silver.effective, silver.requires_card) == ("manual", "on_approval", True)
    assert [lv.code for lv in C.tiers.levels] == ["member", "me", "we", "svip"]
    assert C.tiers.period_start == "08-01"
    assert C.tiers.find("we").valid_months == 12
    assert C.tiers.find("me").valid_months == 12  # issue 13: lapses under 1,000 points


@pytest.mark.parametrize(
    "level, message",
    [
        (
            {
                "code": "x",
                "name": "x",
                "reach": [{"measure": "points", "window": "validity", "threshold": 1}],
            },
            "renew rules only",
        ),
        (
            {
                "code": "x",
                "name": "x",
                "effective": "on_approval",
                "reach": [{"measure": "points", "window": "day", "threshold": 1}],
            },
            "needs requires_card",
        ),
        (
            {
                "code": "x",
                "name": "x",
                "renew": [{"measure": "points", "window": "validity", "threshold": 1}],
                "reach": [{"measure": "points", "window": "day", "threshold": 1}],
            },
            "need valid_months",
        ),
    ],
)
def test_inconsistent_tier_levels_are_refused(level, message):
    with pytest.raises(ValidationError, match=message):
        TierRules(levels=[{"code": "base", "name": "base"}, level])


def test_the_entry_level_cannot_lapse():
    with pytest.raises(ValidationError, match="never lapses"):
        TierRules(levels=[{"code": "base", "name": "base", "valid_months": 12}])


# --------------------------------------------------------------------------- Scheme A


async def test_a_2999_points_in_half_a_year_is_not_gold_3000_is(session):
    await buy(session, A, 2000, date(2026, 3, 1))
    await buy(session, A, 999, date(2026, 8, 15))
    member = await member_of(session)
    assert member.tier == "points"
    assert await applications(session, member) == []

    await buy(session, A, 1, date(2026, 8, 16))
    assert member.tier == "gold"
    assert member.tier_since == date(2026, 8, 16)
    assert member.tier_expires is None
    assert await changes(session, member) == [("upgrade", "points", "gold", date(2026, 8, 16))]
    # Gold needs a card; Scheme A opens the application by itself.
    assert await applications(session, member) == [("gold", "applied")]
    (app,) = await card_reads.list_applications(session, status="applied")
    (event,) = await card_reads.events(session, application_id=app.id)
    assert (event.to_status, event.actor) == ("applied", "system")


@pytest.mark.parametrize("first_day, gold", [(date(2026, 2, 15), False), (date(2026, 2, 16), True)])
async def test_a_points_older_than_six_months_do_not_count(session, first_day, gold):
    await buy(session, A, 2000, first_day)
    await buy(session, A, 1000, date(2026, 8, 15))
    member = await member_of(session)
    assert (member.tier == "gold") is gold


async def test_a_points_earned_seven_months_earlier_do_not_count(session):
    await buy(session, A, 2500, date(2026, 1, 10))
    await buy(session, A, 1500, date(2026, 8, 15))
    member = await member_of(session)
    assert member.cumulative_spend == Decimal("4000.00")
    assert member.tier == "points"


async def test_a_upgrades_one_step_at_a_time(session):
    await buy(session, A, 8000, date(2026, 4, 1))
    member = await member_of(session)
    assert member.tier == "gold"  # 8,000 covers diamond, but gold cannot be skipped

    await buy(session, A, 10, date(2026, 4, 20))
    assert member.tier == "diamond"
    assert member.tier_since == date(2026, 4, 20)
    assert await changes(session, member) == [
        ("upgrade", "points", "gold", date(2026, 4, 1)),
        ("upgrade", "gold", "diamond", date(2026, 4, 20)),
    ]
    # The gold application was still open: the diamond one replaces it.
    assert await applications(session, member) == [("gold", "cancelled"), ("diamond", "applied")]

    await buy(session, A, 10, date(2026, 4, 21))
    assert member.tier == "diamond"
    assert len(await changes(session, member)) == 2


async def test_a_never_downgrades_after_a_purchase(session):
    member = await make_member(session, tier="diamond")
    purchase = await buy(session, A, 5, date(2026, 9, 1))
    assert purchase.member_id == member.id
    assert member.tier == "diamond"
    assert await changes(session, member) == []


async def test_a_evaluation_of_a_directly_inserted_purchase(session):
    """The hook on its own, for callers that write purchases themselves."""
    store = (await session.exec(select(Store))).one()
    member = await make_member(session, store=store)
    purchase = Purchase(
        receipt_no="X1",
        member_id=member.id,
        store_id=store.id,
        amount=Decimal("3000"),
        at=datetime(2026, 5, 1, 10, tzinfo=TZ),
        local_date=date(2026, 5, 1),
        points=3000,
    )
    session.add(purchase)
    await session.flush()
    change = await evaluate_after_purchase(
        session, rules=A, member=member, purchase=purchase, tz=TZ
    )
    assert (change.reason, change.to_tier) == ("upgrade", "gold")
    assert (
        await evaluate_after_purchase(
            session, rules=A, member=member, purchase=purchase, tz=TZ
        )
        is None
    )  # nothing more: diamond needs 8,000


# --------------------------------------------------------------------------- Scheme B


async def test_b_cumulative_5000_makes_silver_eligible_until_applied(session):
    # Every receipt below 1,500 yuan: only the cumulative spend can make silver.
    for day in (date(2026, 1, 5), date(2026, 3, 5), date(2026, 6, 5)):
        await buy(session, B, 1400, day)
    await buy(session, B, "799.99", date(2026, 9, 5))
    member = await member_of(session)
    assert member.eligible_tier is None
    assert await eligible_not_applied(session, rules=B) == []

    await buy(session, B, "0.01", date(2026, 9, 6))
    assert member.tier == "class_c"  # not instant in B
    assert (member.eligible_tier, member.eligible_since) == ("silver", date(2026, 9, 6))
    assert await changes(session, member) == [("eligible", "class_c", "silver", date(2026, 9, 6))]
    assert await applications(session, member) == []
    assert await eligible_not_applied(session, rules=B) == [member]
    assert await eligible_not_applied(session, rules=B, store_id=member.store_id) == [member]
    assert await eligible_not_applied(session, rules=B, store_id=member.store_id + 1) == []

    await cards.open_application(
        session,
        member=member,
        tier="silver",
        actor="assistant:A001",
        now=datetime(2026, 9, 7, 10, tzinfo=TZ),
        rules=B,
    )
    assert await eligible_not_applied(session, rules=B) == []
    assert member.eligible_tier is None
    assert member.tier == "class_c"
    # A further purchase does not flag the member again while the card is under way.
    await buy(session, B, 100, date(2026, 9, 8))
    assert member.eligible_tier is None
    assert len(await changes(session, member)) == 1


@pytest.mark.parametrize("amount, eligible", [("1499.99", None), ("1500", "silver")])
async def test_b_single_purchase_of_1500_makes_silver_eligible(session, amount, eligible):
    await buy(session, B, amount, date(2026, 5, 1))
    member = await member_of(session)
    assert member.eligible_tier == eligible
    assert member.tier == "class_c"


async def test_b_single_purchase_of_3000_goes_straight_to_gold(session):
    await buy(session, B, 3000, date(2026, 5, 1))
    member = await member_of(session)
    assert member.eligible_tier == "gold"
    assert await changes(session, member) == [("eligible", "class_c", "gold", date(2026, 5, 1))]


@pytest.mark.parametrize(
    "first_day, eligible", [(date(2026, 2, 21), "gold"), (date(2026, 2, 20), None)]
)
async def test_b_10000_within_half_a_year_makes_gold_eligible(session, first_day, eligible):
    member = await make_member(session, tier="silver")
    # Every receipt below 3,000 yuan: only the half-year sum can make gold.
    for day in (first_day, date(2026, 4, 1), date(2026, 6, 1), date(2026, 8, 20)):
        await buy(session, B, 2500, day)
    assert member.eligible_tier == eligible
    assert member.tier == "silver"


async def test_b_tier_changes_only_on_approval(session):
    member = await make_member(session, tier="class_c")
    await buy(session, B, 1600, date(2026, 5, 1))
    assert member.eligible_tier == "silver"
    now = datetime(2026, 5, 2, 10, tzinfo=TZ)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=now, rules=B
    )
    for status in ("entered", "sent_to_head_office"):
        await cards.advance(
            session, rules=B, application_id=app.id, to_status=status, actor="api", now=now
        )
        assert member.tier == "class_c"
    # The pending silver counts as the member's tier: qualifying again flags nothing.
    await buy(session, B, 1500, date(2026, 5, 3))
    assert member.eligible_tier is None
    assert len(await changes(session, member)) == 1
    await cards.advance(
        session,
        rules=B,
        application_id=app.id,
        to_status="approved",
        actor="api",
        now=datetime(2026, 5, 9, 23, 30, tzinfo=TZ),
        tz=TZ,
    )
    assert member.tier == "silver"
    assert member.tier_since == date(2026, 5, 9)
    assert (await changes(session, member))[-1] == (
        "card_approved",
        "class_c",
        "silver",
        date(2026, 5, 9),
    )

    # Gold: eligible, applied; the open gold application does not change the tier either.
    await buy(session, B, 3000, date(2026, 6, 1))
    assert (member.tier, member.eligible_tier) == ("silver", "gold")
    gold = await cards.open_application(
        session, member=member, tier="gold", actor="api", now=now, rules=B
    )
    assert member.tier == "silver"
    assert gold.status == "applied"


async def test_b_applying_for_gold_voids_the_open_silver_application(session):
    member = await make_member(session, tier="class_c")
    await buy(session, B, 1500, date(2026, 5, 1))
    now = datetime(2026, 5, 2, 10, tzinfo=TZ)
    await cards.open_application(
        session, member=member, tier="silver", actor="api", now=now, rules=B
    )
    await buy(session, B, 3000, date(2026, 5, 3))  # one step above the pending silver
    assert member.eligible_tier == "gold"
    await cards.open_application(session, member=member, tier="gold", actor="api", now=now, rules=B)
    assert await applications(session, member) == [("silver", "cancelled"), ("gold", "applied")]
    assert member.eligible_tier is None


async def test_b_rejected_application_lets_the_member_be_flagged_again(session):
    member = await make_member(session, tier="class_c")
    await buy(session, B, 1500, date(2026, 5, 1))
    now = datetime(2026, 5, 2, 10, tzinfo=TZ)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=now, rules=B
    )
    for status in ("entered", "sent_to_head_office", "rejected"):
        await cards.advance(
            session, rules=B, application_id=app.id, to_status=status, actor="api", now=now
        )
    await buy(session, B, 10, date(2026, 5, 19))
    assert member.eligible_tier is None  # not flagged by a purchase that does not qualify
    await buy(session, B, 1500, date(2026, 5, 20))
    assert member.eligible_tier == "silver"
    assert await eligible_not_applied(session, rules=B) == [member]


async def test_on_eligible_with_manual_apply_changes_the_tier_and_flags_the_card(session):
    gold = A.tiers.find("gold").model_copy(update={"apply": "manual"})
    levels = [gold if lv.code == "gold" else lv for lv in A.tiers.levels]
    rules = A.model_copy(update={"tiers": A.tiers.model_copy(update={"levels": levels})})
    await buy(session, rules, 3000, date(2026, 5, 1))
    member = await member_of(session)
    assert (member.tier, member.eligible_tier) == ("gold", "gold")
    assert await eligible_not_applied(session, rules=rules) == [member]
    await cards.open_application(
        session,
        member=member,
        tier="gold",
        actor="api",
        now=datetime(2026, 5, 2, 10, tzinfo=TZ),
        rules=rules,
    )
    assert await eligible_not_applied(session, rules=rules) == []


# --------------------------------------------------------------------------- Scheme C


@pytest.mark.parametrize(
    "purchases, tier",
    [
        ([("300", date(2026, 9, 1)), ("200", date(2026, 9, 1))], "me"),
        ([("300", date(2026, 9, 1)), ("199.99", date(2026, 9, 1))], "member"),
        ([("300", date(2026, 9, 1)), ("200", date(2026, 9, 2))], "member"),
    ],
)
async def test_c_me_card_on_500_yuan_in_a_day(session, purchases, tier):
    for amount, day in purchases:
        await buy(session, C, amount, day)
    member = await member_of(session)
    assert member.tier == tier
    assert await applications(session, member) == []  # the ME card needs no application


async def test_c_we_card_on_6000_points_in_a_day(session):
    await buy(session, C, 2000, date(2026, 9, 1), hour=10)
    await buy(session, C, 4000, date(2026, 9, 1), hour=18)
    member = await member_of(session)
    assert member.tier == "we"  # straight from member (not stepwise)
    assert (member.tier_since, member.tier_expires) == (date(2026, 9, 1), date(2027, 9, 1))
    assert await applications(session, member) == [("we", "applied")]


async def test_c_we_card_on_12000_points_in_a_month(session):
    rules = with_reach(C, "we", TierRule(measure="points", window="month", threshold=12000))
    await make_member(session, tier="me")
    await buy(session, rules, 5000, date(2026, 9, 3))
    await buy(session, rules, 5000, date(2026, 9, 20))
    await buy(session, rules, 2000, date(2026, 10, 1))
    member = await member_of(session)
    assert member.tier == "me"  # 12,000 spread over two months
    await buy(session, rules, 2000, date(2026, 9, 30))
    assert member.tier == "we"


async def test_c_we_card_on_10000_points_in_the_annual_period(session):
    await make_member(session, tier="me")
    await buy(session, C, 5000, date(2026, 7, 31))  # period 2025-08-01 .. 2026-07-31
    await buy(session, C, 5000, date(2026, 8, 1))  # period 2026-08-01 .. 2027-07-31
    member = await member_of(session)
    assert member.tier == "me"
    await buy(session, C, 5000, date(2027, 7, 31))
    assert member.tier == "we"
    assert member.tier_expires == date(2028, 7, 31)


async def test_c_svip_on_30000_points_in_a_day(session):
    await buy(session, C, 30000, date(2026, 9, 1))
    member = await member_of(session)
    assert member.tier == "svip"
    assert await applications(session, member) == [("svip", "applied")]


async def _we_member(session, since: date) -> Member:
    await buy(session, C, 6000, since)
    member = await member_of(session)
    assert member.tier == "we"
    return member


async def test_c_review_renews_when_the_year_reaches_the_threshold(session):
    member = await _we_member(session, date(2026, 9, 10))  # 6,000 points that year
    await buy(session, C, 4000, date(2027, 9, 9))  # the validity's last day: 10,000
    assert await review_tiers(session, rules=C, today=date(2027, 9, 9)) == []

    done = await review_tiers(session, rules=C, today=date(2027, 9, 10))
    assert [(c.reason, c.from_tier, c.to_tier, c.on) for c in done] == [
        ("renewed", "we", "we", date(2027, 9, 10))
    ]
    assert (member.tier, member.tier_since, member.tier_expires) == (
        "we",
        date(2026, 9, 10),
        date(2028, 9, 10),
    )
    # Idempotent: the same day again changes nothing.
    assert await review_tiers(session, rules=C, today=date(2027, 9, 10)) == []
    assert len(await changes(session, member)) == 2

    # The next year starts empty: the 10,000 belonged to the first year.
    done = await review_tiers(session, rules=C, today=date(2028, 9, 10))
    assert [c.reason for c in done] == ["lapsed"]
    assert member.tier == "me"


async def test_c_review_lapses_to_the_lower_card(session):
    member = await _we_member(session, date(2026, 9, 10))
    await buy(session, C, 3999, date(2027, 9, 9))
    await buy(session, C, 5000, date(2027, 9, 10))  # the review day is the next validity
    assert member.tier == "we"
    done = await review_tiers(session, rules=C, today=date(2027, 9, 10))
    assert [(c.reason, c.from_tier, c.to_tier, c.on) for c in done] == [
        ("lapsed", "we", "me", date(2027, 9, 10))
    ]
    # issue 13: the ME card is valid 12 months and lapses under 1,000 points in its year
    assert (member.tier, member.tier_since, member.tier_expires) == (
        "me",
        date(2027, 9, 10),
        date(2028, 9, 10),
    )
    assert await review_tiers(session, rules=C, today=date(2027, 9, 10)) == []
    done = await review_tiers(session, rules=C, today=date(2030, 1, 1))
    assert [(c.reason, c.to_tier, c.on) for c in done] == [
        ("renewed", "me", date(2028, 9, 10)),  # the 5,000 of 2027-09-10
        ("lapsed", "member", date(2029, 9, 10)),
    ]


async def test_c_a_late_review_catches_up_one_validity_at_a_time(session):
    await buy(session, C, 30000, date(2026, 9, 10))
    member = await member_of(session)
    assert member.tier == "svip"
    done = await review_tiers(
        session, rules=C, today=date(2028, 10, 1), now=datetime(2028, 10, 1, 8, tzinfo=TZ)
    )
    # SVIP year 1: 30,000 < 60,000 → WE from 2027-09-10, which holds until 2028-09-10;
    # WE year: nothing bought → ME.
    assert [(c.reason, c.from_tier, c.to_tier, c.on) for c in done] == [
        ("lapsed", "svip", "we", date(2027, 9, 10)),
        ("lapsed", "we", "me", date(2028, 9, 10)),
    ]
    assert all(c.at == datetime(2028, 10, 1, 8, tzinfo=TZ) for c in done)
    assert await review_tiers(session, rules=C, today=date(2028, 10, 1)) == []


async def test_c_review_with_the_period_reading(session):
    """window = "period": the annual tier period containing the card's last valid day."""
    we = C.tiers.find("we").model_copy(
        update={"renew": [TierRule(measure="points", window="period", threshold=10000)]}
    )
    levels = [we if lv.code == "we" else lv for lv in C.tiers.levels]
    rules = C.model_copy(update={"tiers": C.tiers.model_copy(update={"levels": levels})})
    await buy(session, rules, 6000, date(2026, 9, 10))
    member = await member_of(session)
    await buy(session, rules, 4000, date(2027, 8, 1))  # period 2027-08-01 .. 2028-07-31
    done = await review_tiers(session, rules=rules, today=date(2027, 9, 10))
    assert [c.reason for c in done] == ["lapsed"]  # last valid day 2027-09-09: 4,000 only
    assert member.tier == "me"


# --------------------------------------------------------------------------- progress


async def progress_of(session, rules: LoyaltyRules, member, today: date):
    """The progress part of the points answer's read (`models.tiers.facts.read_points`)."""
    found = await read_points(session, tiers=rules.tiers, member_id=member.id, today=today)
    return found.progress


async def test_progress_half_year_says_what_is_missing_and_when_points_drop_out(session):
    await buy(session, A, 1000, date(2026, 3, 1))
    await buy(session, A, 500, date(2026, 5, 10))
    member = await member_of(session)
    progress = await progress_of(session, A, member, date(2026, 6, 1))
    assert (progress.tier, progress.pending, progress.next.code) == ("points", None, "gold")
    (rule,) = progress.rules
    assert (rule.counted, rule.missing) == (Decimal(1500), Decimal(1500))
    assert rule.buy_by == date(2026, 8, 31)
    assert (rule.drops_on, rule.drops) == (date(2026, 9, 1), Decimal(1000))
    assert progress.closest is rule


async def test_progress_windows_of_scheme_c(session):
    await buy(session, C, 500, date(2026, 9, 3))
    member = await member_of(session)
    assert member.tier == "me"
    await buy(session, C, 1000, date(2026, 9, 20))
    progress = await progress_of(session, C, member, date(2026, 9, 20))
    assert progress.next.code == "we"
    by_window = {r.rule.window: r for r in progress.rules}
    assert (by_window["day"].counted, by_window["day"].buy_by) == (Decimal(1000), date(2026, 9, 20))
    assert (by_window["month"].missing, by_window["month"].buy_by) == (
        Decimal(10500),
        date(2026, 9, 30),
    )
    assert (by_window["period"].missing, by_window["period"].buy_by) == (
        Decimal(8500),
        date(2027, 7, 31),
    )
    assert by_window["period"].drops_on is None


async def test_progress_of_a_pending_member_and_at_the_top(session):
    await buy(session, B, 1500, date(2026, 5, 1))
    member = await member_of(session)
    progress = await progress_of(session, B, member, date(2026, 5, 2))
    assert (progress.tier, progress.pending, progress.next.code) == ("class_c", "silver", "gold")
    by_window = {r.rule.window: r for r in progress.rules}
    assert by_window["single_purchase"].missing == Decimal(3000)
    assert by_window["half_year"].missing == Decimal("8500.00")

    top = await make_member(session, phone="+8613900139000", tier="gold")
    assert await progress_of(session, B, top, date(2026, 5, 2)) is None


# --------------------------------------------------------------------------- 004: the August review


async def test_c_upgrades_wait_for_the_august_review(session):
    """004: WE reached in December marks the member eligible; the tier changes, and the
    card application opens, on 1 August (the period's first day) — once."""
    await make_member(session, tier="me")
    await buy(session, C_AS_SHIPPED, 6000, date(2026, 12, 5))
    member = await member_of(session)
    assert (member.tier, member.eligible_tier) == ("me", "we")
    assert await applications(session, member) == []
    await buy(session, C_AS_SHIPPED, 6000, date(2027, 1, 5))  # earned again: not recorded twice
    assert [c[0] for c in await changes(session, member)] == ["eligible"]
    now = datetime(2027, 8, 1, 8, tzinfo=TZ)
    day_before = date(2027, 7, 31)
    assert await review_upgrades(session, rules=C_AS_SHIPPED, today=day_before, now=now) == []
    [done] = await review_upgrades(session, rules=C_AS_SHIPPED, today=date(2027, 8, 1), now=now)
    assert (done.reason, done.from_tier, done.to_tier, done.on) == (
        "review_upgrade", "me", "we", date(2027, 8, 1)
    )
    member = await member_of(session)
    assert (member.tier, member.tier_since, member.eligible_tier) == ("we", date(2027, 8, 1), None)
    assert member.tier_expires == date(2028, 8, 1)
    assert await applications(session, member) == [("we", "applied")]
    assert await review_upgrades(session, rules=C_AS_SHIPPED, today=date(2027, 8, 1), now=now) == []


async def test_c_review_takes_the_highest_level_earned(session):
    await make_member(session, tier="me")
    await buy(session, C_AS_SHIPPED, 6000, date(2027, 3, 1))
    await buy(session, C_AS_SHIPPED, 30000, date(2027, 5, 1))
    member = await member_of(session)
    assert (member.tier, member.eligible_tier) == ("me", "svip")
    now = datetime(2027, 8, 1, 8, tzinfo=TZ)
    [done] = await review_upgrades(session, rules=C_AS_SHIPPED, today=date(2027, 8, 1), now=now)
    assert (done.from_tier, done.to_tier) == ("me", "svip")


async def test_levels_that_apply_at_once_ignore_the_review(session):
    await make_member(session, tier="me")
    await buy(session, C, 6000, date(2026, 12, 5))
    assert (await member_of(session)).tier == "we"
    now = datetime(2027, 8, 1, 8, tzinfo=TZ)
    assert await review_upgrades(session, rules=C, today=date(2027, 8, 1), now=now) == []
