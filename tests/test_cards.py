"""models/cards.py: the card tracker (DOMAIN.md §5) — steps, illegal steps, history, races."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from models import card_reads, cards
from models.db import transaction
from models.errors import Conflict, InvalidInput, NotFound
from models.rules import LoyaltyRules
from models.settings.load import load_settings
from models.tables.cards import CardApplication, CardEvent
from models.tables.ledger import TierChange
from models.tables.members import Member
from tests.conftest import is_pg
from tests.factories import make_assistant, make_member, make_store

TZ = ZoneInfo("Asia/Shanghai")
A = LoyaltyRules()
B = load_settings(
    Path(__file__).resolve().parent.parent / "examples/scheme-b.toml", environ={}
).loyalty
NOW = datetime(2026, 5, 2, 10, tzinfo=TZ)
HAPPY = (
    "entered",
    "sent_to_head_office",
    "approved",
    "notified",
    "notified_again",
    "mailed",
    "picked_up",
)
ALLOWED = {
    ("applied", "entered"),
    ("applied", "cancelled"),
    ("entered", "sent_to_head_office"),
    ("entered", "cancelled"),
    ("sent_to_head_office", "approved"),
    ("sent_to_head_office", "rejected"),
    ("sent_to_head_office", "cancelled"),
    ("approved", "notified"),
    ("approved", "picked_up"),
    ("approved", "mailed"),
    ("notified", "notified_again"),
    ("notified", "picked_up"),
    ("notified", "mailed"),
    ("notified_again", "mailed"),
    ("notified_again", "picked_up"),
    ("mailed", "picked_up"),
}


@pytest.fixture
async def session(sessions):
    async with transaction(sessions) as s:
        yield s


async def silver_applicant(session, *, phone="+8613800138000", store=None) -> Member:
    store = store or await make_store(session, code="S001")
    assistant = await make_assistant(session, store=store, code=f"A{phone[-4:]}")
    member = await make_member(
        session, phone=phone, store=store, assistant=assistant, tier="class_c"
    )
    member.eligible_tier, member.eligible_since = "silver", date(2026, 5, 1)
    member.address = "上海市静安区南京西路1号"
    session.add(member)
    await session.flush()
    return member


async def history(session, app: CardApplication) -> list[tuple[str, str, str, str]]:
    return [
        (e.from_status, e.to_status, e.actor, e.note)
        for e in await card_reads.events(session, application_id=app.id)
    ]


async def set_status(session, app: CardApplication, status: str) -> None:
    """Put an application in any state directly (test setup only)."""
    await session.exec(
        update(CardApplication).where(col(CardApplication.id) == app.id).values(status=status)
    )
    await session.refresh(app)


def test_the_transition_table_is_the_documented_one():
    pairs = {(f, t) for f, targets in cards.TRANSITIONS.items() for t in targets}
    assert pairs == ALLOWED
    assert set(cards.TRANSITIONS) == set(cards.STATUSES)


async def test_the_full_happy_path_records_every_step(session):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="assistant:A8000", now=NOW, rules=B
    )
    assert (app.status, app.store_id, app.assistant_id) == (
        "applied",
        member.store_id,
        member.assistant_id,
    )
    for i, status in enumerate(HAPPY):
        got = await cards.advance(
            session,
            rules=B,
            application_id=app.id,
            to_status=status,
            actor=f"staff{i}",
            now=NOW,
            note=status.upper(),
            pickup_date=date(2026, 5, 20) if status == "notified" else None,
            tz=TZ,
        )
        assert got is app and app.status == status
    assert await history(session, app) == [
        ("", "applied", "assistant:A8000", ""),
        ("applied", "entered", "staff0", "ENTERED"),
        ("entered", "sent_to_head_office", "staff1", "SENT_TO_HEAD_OFFICE"),
        ("sent_to_head_office", "approved", "staff2", "APPROVED"),
        ("approved", "notified", "staff3", "NOTIFIED"),
        ("notified", "notified_again", "staff4", "NOTIFIED_AGAIN"),
        ("notified_again", "mailed", "staff5", "MAILED"),
        ("mailed", "picked_up", "staff6", "PICKED_UP"),
    ]
    assert app.pickup_date == date(2026, 5, 20)
    assert app.mail_address == "上海市静安区南京西路1号"  # the address on file
    # Scheme B: the tier changes on approval.
    assert member.tier == "silver"
    assert member.eligible_tier is None
    change = (await session.exec(select(TierChange))).one()
    assert (change.reason, change.from_tier, change.to_tier, change.on) == (
        "card_approved",
        "class_c",
        "silver",
        date(2026, 5, 2),
    )


async def test_mailing_to_a_confirmed_address(session):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    await set_status(session, app, "approved")
    await cards.advance(
        session,
        rules=B,
        application_id=app.id,
        to_status="mailed",
        actor="member:wechat",
        now=NOW,
        mail_address="北京市朝阳区1号",
    )
    assert app.mail_address == "北京市朝阳区1号"


@pytest.mark.parametrize(
    "from_status, to_status",
    sorted(
        (f, t) for f in cards.STATUSES for t in cards.STATUSES if f != t and (f, t) not in ALLOWED
    ),
)
async def test_every_illegal_step_is_a_conflict(session, from_status, to_status):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    await set_status(session, app, from_status)
    with pytest.raises(Conflict) as info:
        await cards.advance(
            session, rules=B, application_id=app.id, to_status=to_status, actor="api", now=NOW
        )
    assert info.value.field == "status"
    assert info.value.message == f"illegal step {from_status} → {to_status}"
    assert app.status == from_status
    assert len(await history(session, app)) == 1
    assert member.tier == "class_c"


@pytest.mark.parametrize("from_status, to_status", sorted(ALLOWED))
async def test_every_allowed_step_is_taken(session, from_status, to_status):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    await set_status(session, app, from_status)
    await cards.advance(
        session, rules=B, application_id=app.id, to_status=to_status, actor="api", now=NOW
    )
    assert app.status == to_status
    assert (await history(session, app))[-1][:2] == (from_status, to_status)


async def test_the_same_status_again_is_a_no_op(session):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    for _ in range(2):
        got = await cards.advance(
            session, rules=B, application_id=app.id, to_status="entered", actor="api", now=NOW
        )
        assert got.status == "entered"
    assert [e[1] for e in await history(session, app)] == ["applied", "entered"]
    with pytest.raises(Conflict):  # going back is not "the same status"
        await cards.advance(
            session, rules=B, application_id=app.id, to_status="applied", actor="api", now=NOW
        )


async def test_unknown_status_and_unknown_id(session):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    with pytest.raises(InvalidInput) as info:
        await cards.advance(
            session, rules=B, application_id=app.id, to_status="lost", actor="api", now=NOW
        )
    assert info.value.field == "status"
    with pytest.raises(NotFound) as missing:
        await cards.advance(
            session, rules=B, application_id=app.id + 99, to_status="entered", actor="api", now=NOW
        )
    assert missing.value.field == "id"
    with pytest.raises(InvalidInput):
        await card_reads.list_applications(session, status="lost")


async def test_opening_is_idempotent_per_tier(session):
    member = await silver_applicant(session)
    first = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    again = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    assert again.id == first.id
    assert len(await card_reads.list_applications(session)) == 1


async def test_a_higher_application_cancels_open_lower_ones(session):
    member = await silver_applicant(session)
    silver = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    await cards.advance(
        session, rules=B, application_id=silver.id, to_status="entered", actor="api", now=NOW
    )
    gold = await cards.open_application(
        session, member=member, tier="gold", actor="assistant:A8000", now=NOW, rules=B
    )
    assert (silver.status, gold.status) == ("cancelled", "applied")
    assert (await history(session, silver))[-1] == (
        "entered",
        "cancelled",
        "assistant:A8000",
        "replaced by gold",
    )
    # A lower application opened later does not cancel the higher one.
    await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    assert gold.status == "applied"


async def test_an_approved_lower_card_is_not_cancelled(session):
    member = await silver_applicant(session)
    silver = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    await set_status(session, silver, "approved")
    await cards.open_application(session, member=member, tier="gold", actor="api", now=NOW, rules=B)
    assert silver.status == "approved"


async def test_approval_in_scheme_a_keeps_the_tier(session):
    """Scheme A cards take effect on eligibility: approval changes no tier."""
    member = await make_member(session, tier="gold")
    app = await cards.open_application(
        session, member=member, tier="gold", actor="system", now=NOW, rules=A
    )
    await set_status(session, app, "sent_to_head_office")
    await cards.advance(
        session, rules=A, application_id=app.id, to_status="approved", actor="api", now=NOW
    )
    assert member.tier == "gold"
    assert (await session.exec(select(TierChange))).all() == []


async def test_approval_never_lowers_a_tier(session):
    member = await silver_applicant(session)
    app = await cards.open_application(
        session, member=member, tier="silver", actor="api", now=NOW, rules=B
    )
    member.tier = "gold"
    session.add(member)
    await set_status(session, app, "sent_to_head_office")
    await cards.advance(
        session, rules=B, application_id=app.id, to_status="approved", actor="api", now=NOW
    )
    assert member.tier == "gold"


async def test_list_by_status_and_store(session):
    one = await silver_applicant(session, phone="+8613800000001")
    other_store = await make_store(session, code="S002")
    two = await silver_applicant(session, phone="+8613800000002", store=other_store)
    a1 = await cards.open_application(
        session, member=one, tier="silver", actor="api", now=NOW, rules=B
    )
    a2 = await cards.open_application(
        session, member=two, tier="silver", actor="api", now=NOW, rules=B
    )
    await cards.advance(
        session, rules=B, application_id=a2.id, to_status="entered", actor="api", now=NOW
    )
    assert [a.id for a in await card_reads.list_applications(session)] == [a1.id, a2.id]
    assert [a.id for a in await card_reads.list_applications(session, status="applied")] == [a1.id]
    assert [a.id for a in await card_reads.list_applications(session, store_id=other_store.id)] == [
        a2.id
    ]
    none = await card_reads.list_applications(session, status="entered", store_id=one.store_id)
    assert none == []


# --------------------------------------------------------------------------- concurrency


async def _new_application(sessions) -> int:
    async with transaction(sessions) as s:
        member = await silver_applicant(s)
        app = await cards.open_application(
            s, member=member, tier="silver", actor="api", now=NOW, rules=B
        )
        return app.id


async def _advance(sessions, app_id: int, actor: str) -> str:
    async with transaction(sessions) as s:
        app = await cards.advance(
            s, rules=B, application_id=app_id, to_status="entered", actor=actor, now=NOW
        )
        return app.status


async def _event_count(sessions, app_id: int) -> int:
    async with transaction(sessions) as s:
        rows = await s.exec(select(CardEvent).where(CardEvent.application_id == app_id))
        return len(rows.all())


async def test_two_concurrent_advances_make_one_step(sessions):
    app_id = await _new_application(sessions)
    results = await asyncio.gather(*(_advance(sessions, app_id, f"clerk{i}") for i in range(2)))
    assert results == ["entered", "entered"]
    assert await _event_count(sessions, app_id) == 2  # "applied" + one "entered"


@pytest.mark.skipif(not is_pg(), reason="row locks are PostgreSQL's; SQLite serialises writers")
async def test_a_second_advance_waits_for_the_first_and_sees_its_result(sessions, engine):
    """Deterministic interleaving: the first transaction has stepped but not committed when
    the second starts; the second must wait on the row lock, then find the step done."""
    app_id = await _new_application(sessions)
    async with sessions() as first:
        await first.begin()
        await cards.advance(
            first, rules=B, application_id=app_id, to_status="entered", actor="one", now=NOW
        )
        second = asyncio.create_task(_advance(sessions, app_id, "two"))
        async with engine.connect() as probe:
            for _ in range(500):
                waiting = await probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                if waiting or second.done():
                    break
                await asyncio.sleep(0.01)
        assert waiting == 1 and not second.done()
        await first.commit()
    assert await second == "entered"
    assert await _event_count(sessions, app_id) == 2
