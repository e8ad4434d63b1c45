"""The outbox state machine and claims (models/outbox/states.py, claims.py,
receipts.py): enqueue once per occasion, every change an event, never backwards,
due-message claims, stale claims taken over, concurrent claimers getting disjoint rows,
and SMS receipts applied forward only.

The helpers at the top are shared with tests/test_sender.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from models import consent
from models.db import transaction
from models.outbox.claims import Accepted, claim, record_sent
from models.outbox.receipts import apply_receipt, record_receipt
from models.outbox.states import (
    CLAIM_EXPIRED,
    DELIVERED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    STATUSES,
    SUPPRESSED,
    UNDELIVERABLE,
    can_transition,
    enqueue,
    events,
    transition,
)
from models.tables.members import ConsentEvent, Identity, Member
from models.tables.outbox import OutboxMessage
from tests.conftest import is_pg

DAY = date(2026, 12, 1)
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
"""10:00 in Shanghai on DAY: inside the default send window."""
PHONE = "+8613800138000"


# ----------------------------------------------------------------------------- helpers


async def add_member(
    sessions, *, phone: str = PHONE, stopped: bool = False, preferred: str | None = None
) -> int:
    async with transaction(sessions) as s:
        member = Member(
            phone=phone, name="张三", join_date=date(2026, 1, 1), stopped=stopped,
            preferred_contact=preferred,
        )  # fmt: skip
        s.add(member)
        await s.flush()
        return member.id


async def add_message(
    sessions,
    *,
    member_id: int,
    kind: str = "care_d30",
    occasion: str = "purchase:1",
    channel: str = "sms",
    via: str = "twilio",
    address: str = PHONE,
    send_after: datetime = T0,
    planned_on: date = DAY,
    text: str = "天冷了，注意保暖。回复TD退订",
    now: datetime = T0 - timedelta(hours=2),
) -> int:
    async with transaction(sessions) as s:
        msg = await enqueue(
            s, member_id=member_id, kind=kind, occasion=occasion, planned_on=planned_on,
            text=text, channel=channel, via=via, address=address, send_after=send_after,
            now=now,
        )  # fmt: skip
        assert msg is not None
        return msg.id


async def load(sessions, message_id: int) -> OutboxMessage:
    async with sessions() as s:
        return await s.get(OutboxMessage, message_id)


async def history(sessions, message_id: int) -> list[tuple[str, str, str | None]]:
    async with sessions() as s:
        return [
            (e.from_status, e.to_status, e.reason) for e in await events(s, message_id=message_id)
        ]


async def set_status(sessions, message_id: int, **values) -> None:
    """Put a message straight into a state (what another process left behind)."""
    async with transaction(sessions) as s:
        await s.exec(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values))


async def claim_now(sessions, *, now: datetime = T0, limit: int = 100, **kw) -> list[int]:
    async with transaction(sessions) as s:
        return [m.id for m in await claim(s, now=now, limit=limit, **kw)]


# ----------------------------------------------------------------------------- enqueue


async def test_enqueue_adds_a_kind_once_per_member_and_occasion(sessions):
    member_id = await add_member(sessions)
    first = await add_message(sessions, member_id=member_id, kind="birthday", occasion="2026")
    async with transaction(sessions) as s:
        again = await enqueue(
            s, member_id=member_id, kind="birthday", occasion="2026", planned_on=DAY,
            text="other", channel="sms", via="twilio", address=PHONE, send_after=T0, now=T0,
        )  # fmt: skip
    assert again is None
    async with sessions() as s:
        rows = (await s.exec(select(OutboxMessage))).all()
    assert [(m.id, m.status, m.text) for m in rows] == [(first, QUEUED, rows[0].text)]
    assert await history(sessions, first) == [("planned", "queued", None)]


async def test_concurrent_enqueues_make_one_row(sessions):
    member_id = await add_member(sessions)

    async def one(text: str):
        async with transaction(sessions) as s:
            return await enqueue(
                s, member_id=member_id, kind="personal_greeting", occasion="greeting:abc",
                planned_on=DAY, text=text, channel="sms", via="twilio", address=PHONE,
                send_after=T0, now=T0,
            )  # fmt: skip

    results = await asyncio.gather(*(one(f"hello {i}") for i in range(5)))
    assert sum(r is not None for r in results) == 1
    async with sessions() as s:
        assert len((await s.exec(select(OutboxMessage))).all()) == 1


# ----------------------------------------------------------------------------- transitions


def test_the_allowed_moves():
    assert can_transition("queued", "sending") and can_transition("sending", "sent")
    assert can_transition("sent", "delivered") and can_transition("failed", "sending")
    assert can_transition("sending", "queued")  # released unsent
    assert not can_transition("delivered", "sent")
    assert not can_transition("sent", "sending")
    assert not can_transition("sent", "queued")
    assert not can_transition("failed", "sent")
    for final in ("delivered", "undeliverable", "suppressed"):
        assert not any(can_transition(final, to) for to in STATUSES)


async def test_every_change_is_an_event_and_nothing_moves_backwards(sessions):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    steps = [
        (SENDING, True), (SENT, True), (SENDING, False), (QUEUED, False),
        (DELIVERED, True), (SENT, False), (UNDELIVERABLE, False),
    ]  # fmt: skip
    for i, (to, ok) in enumerate(steps):
        async with transaction(sessions) as s:
            moved = await transition(
                s, message_id=mid, to_status=to, now=T0 + timedelta(seconds=i), reason=f"step {i}"
            )
        assert moved is ok, (to, ok)
    msg = await load(sessions, mid)
    assert msg.status == DELIVERED and msg.reason == "step 4"
    assert msg.updated_at == T0 + timedelta(seconds=4)
    assert await history(sessions, mid) == [
        ("planned", "queued", None),
        ("queued", "sending", "step 0"),
        ("sending", "sent", "step 1"),
        ("sent", "delivered", "step 4"),
    ]


async def test_a_transition_is_conditional_on_the_state_and_claim_it_expects(sessions):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    async with transaction(sessions) as s:
        [msg] = await claim(s, now=T0, limit=10)
    async with transaction(sessions) as s:  # someone else's claim: refused
        assert not await transition(
            s, message=msg, from_status=SENDING, if_claimed_at=T0 - timedelta(minutes=1),
            to_status=SENT, now=T0,
        )  # fmt: skip
        assert not await transition(
            s, message_id=mid, from_status=QUEUED, to_status=SENDING, now=T0
        )
        assert await transition(
            s, message=msg, from_status=SENDING, if_claimed_at=T0, to_status=SENT, now=T0,
            provider_id="SM1", attempts=1,
        )  # fmt: skip
    assert msg.status == SENT and msg.provider_id == "SM1"  # the object follows
    stored = await load(sessions, mid)
    assert (stored.status, stored.provider_id, stored.attempts) == (SENT, "SM1", 1)


async def test_transition_refuses_unknown_states_fields_and_naive_times(sessions):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    async with transaction(sessions) as s:
        with pytest.raises(ValueError):
            await transition(s, message_id=mid, to_status="lost", now=T0)
        with pytest.raises(TypeError):
            await transition(s, message_id=mid, to_status=SENDING, now=T0, member_id=3)
        with pytest.raises(ValueError):
            await transition(s, message_id=mid, to_status=SENDING, now=datetime(2026, 12, 1))


# ----------------------------------------------------------------------------- claims


async def test_claim_takes_due_messages_oldest_first_and_marks_them_sending(sessions):
    member_id = await add_member(sessions)
    due_late = await add_message(sessions, member_id=member_id, occasion="a", send_after=T0)
    due_early = await add_message(
        sessions, member_id=member_id, occasion="b", send_after=T0 - timedelta(hours=1)
    )
    future = await add_message(
        sessions, member_id=member_id, occasion="c", send_after=T0 + timedelta(seconds=1)
    )
    retry_due = await add_message(sessions, member_id=member_id, occasion="d")
    await set_status(sessions, retry_due, status=FAILED, attempts=2, next_attempt_at=T0)
    retry_later = await add_message(sessions, member_id=member_id, occasion="e")
    await set_status(
        sessions, retry_later, status=FAILED, attempts=1, next_attempt_at=T0 + timedelta(1)
    )
    gave_up = await add_message(sessions, member_id=member_id, occasion="f")
    await set_status(sessions, gave_up, status=FAILED, attempts=8, next_attempt_at=None)
    spent = await add_message(sessions, member_id=member_id, occasion="g")
    await set_status(sessions, spent, status=FAILED, attempts=8, next_attempt_at=T0)
    for status, occasion in ((SENT, "h"), (SUPPRESSED, "i"), ("planned", "j")):
        mid = await add_message(sessions, member_id=member_id, occasion=occasion)
        await set_status(sessions, mid, status=status)

    assert await claim_now(sessions, max_attempts=8) == [due_early, due_late, retry_due]
    for mid in (due_early, due_late, retry_due):
        msg = await load(sessions, mid)
        assert (msg.status, msg.claimed_at) == (SENDING, T0)
    assert (await history(sessions, retry_due))[-1] == ("failed", "sending", None)
    assert (await load(sessions, future)).status == QUEUED
    assert await claim_now(sessions) == []  # nothing claimed twice


async def test_claim_respects_the_limit_and_the_channel(sessions):
    member_id = await add_member(sessions)
    sms = [await add_message(sessions, member_id=member_id, occasion=f"s{i}") for i in range(3)]
    wechat = await add_message(
        sessions, member_id=member_id, occasion="w", channel="wechat", via="customer_service",
        address="o-openid",
    )  # fmt: skip
    assert await claim_now(sessions, limit=2, channel="sms") == sms[:2]
    assert await claim_now(sessions, channel={"wechat", "console"}) == [wechat]
    assert await claim_now(sessions, limit=0) == []
    assert await claim_now(sessions) == sms[2:]


async def test_a_stale_claim_is_taken_over_and_counts_as_an_attempt(sessions):
    """A process died mid-send: after claim_timeout its message is sent again."""
    member_id = await add_member(sessions)
    stale = await add_message(sessions, member_id=member_id, occasion="a")
    fresh = await add_message(sessions, member_id=member_id, occasion="b")
    dead = await add_message(sessions, member_id=member_id, occasion="c")
    await set_status(sessions, stale, status=SENDING, claimed_at=T0 - timedelta(seconds=301))
    await set_status(sessions, fresh, status=SENDING, claimed_at=T0 - timedelta(seconds=299))
    await set_status(sessions, dead, status=SENDING, attempts=2, claimed_at=T0 - timedelta(hours=1))
    assert await claim_now(sessions, claim_timeout=300, max_attempts=3) == [stale]
    msg = await load(sessions, stale)
    assert (msg.status, msg.claimed_at, msg.attempts) == (SENDING, T0, 1)
    assert (await history(sessions, stale))[-1] == (
        "sending", "sending", f"reclaimed: {CLAIM_EXPIRED}"
    )  # fmt: skip
    gone = await load(sessions, dead)
    assert (gone.status, gone.attempts, gone.next_attempt_at) == (FAILED, 3, None)
    assert gone.reason.startswith("gave up")
    assert (await load(sessions, fresh)).claimed_at == T0 - timedelta(seconds=299)


async def test_two_concurrent_claimers_get_disjoint_messages(sessions):
    """PostgreSQL: FOR UPDATE SKIP LOCKED — the second claimer does not wait and skips the
    first one's rows. SQLite: BEGIN IMMEDIATE — the second waits for the first to commit
    and then sees its rows as `sending`. Either way no message is claimed twice."""
    member_id = await add_member(sessions)
    ids = [await add_message(sessions, member_id=member_id, occasion=f"o{i}") for i in range(5)]

    async def claim_b() -> list[int]:
        return await claim_now(sessions, limit=10)

    async with sessions() as sa:
        async with sa.begin():
            first = [m.id for m in await claim(sa, now=T0, limit=3)]
            if is_pg():  # not blocked by A's open transaction
                second = await asyncio.wait_for(claim_b(), 10)
            else:
                task = asyncio.ensure_future(claim_b())
        if not is_pg():
            second = await asyncio.wait_for(task, 10)
    assert first == ids[:3]
    assert sorted(second) == ids[3:]


# ----------------------------------------------------------------------------- receipts


async def _sent_message(sessions, *, provider_id: str = "SM1", member_id: int | None = None):
    member_id = member_id or await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    await set_status(sessions, mid, status=SENT, provider_id=provider_id)
    return mid


async def receipt(sessions, status: str, *, provider_id: str = "SM1", code=None, at=T0) -> bool:
    async with transaction(sessions) as s:
        if await record_receipt(s, provider_id=provider_id, status=status, error_code=code, at=at):
            return await apply_receipt(s, provider_id=provider_id, now=at)
        return False


async def test_receipts_move_a_sent_message_forward_only(sessions):
    mid = await _sent_message(sessions)
    assert not await receipt(sessions, "sent")
    assert await receipt(sessions, "delivered", at=T0 + timedelta(seconds=5))
    assert not await receipt(sessions, "sent", at=T0 + timedelta(seconds=6))  # late, stale
    assert not await receipt(sessions, "undelivered", at=T0 + timedelta(seconds=7))
    msg = await load(sessions, mid)
    assert (msg.status, msg.updated_at) == (DELIVERED, T0 + timedelta(seconds=5))
    assert (await history(sessions, mid))[-1] == ("sent", "delivered", None)


async def test_a_receipt_for_no_known_message_changes_nothing(sessions):
    mid = await _sent_message(sessions, provider_id="SM1")
    assert not await receipt(sessions, "delivered", provider_id="SM2")
    assert (await load(sessions, mid)).status == SENT


async def test_an_undelivered_receipt_makes_the_message_undeliverable(sessions):
    mid = await _sent_message(sessions)
    assert await receipt(sessions, "undelivered", code="30003")
    msg = await load(sessions, mid)
    assert (msg.status, msg.reason, msg.error_code) == (
        UNDELIVERABLE, "twilio undelivered (30003)", "30003"
    )  # fmt: skip


async def test_a_failed_receipt_with_21610_records_the_members_stop(sessions):
    member_id = await add_member(sessions)
    await _sent_message(sessions, member_id=member_id)
    assert await receipt(sessions, "failed", code="21610")
    async with sessions() as s:
        member = await s.get(Member, member_id)
        [event] = await consent.history(s, member_id=member_id)
    assert member.stopped
    assert (event.action, event.channel, event.source) == ("stop", "provider", "twilio 21610")


async def test_a_failed_receipt_with_21211_marks_the_number_bad(sessions):
    member_id = await add_member(sessions)
    await _sent_message(sessions, member_id=member_id)
    assert await receipt(sessions, "failed", code="21211")
    async with sessions() as s:
        [ident] = (await s.exec(select(Identity))).all()
        consent_events = (await s.exec(select(ConsentEvent))).all()
    assert (ident.channel, ident.address, ident.member_id, ident.bad) == (
        "sms", PHONE, member_id, True
    )  # fmt: skip
    assert ident.bad_reason == "twilio 21211" and consent_events == []


# ----------------------------------------------------------------------------- callback races


async def _claimed(sessions) -> int:
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    assert await claim_now(sessions) == [mid]
    return mid


def _accepted(mid: int) -> Accepted:
    return Accepted(
        message_id=mid,
        claimed_at=T0,
        via="twilio",
        provider_id="SM9",
        provider_status="queued",
        receipts=True,
    )


async def test_a_callback_committed_while_the_sender_records_is_applied(sessions):
    """The callback's transaction inserted the receipt first: the sender's insert of the
    same provider id waits for it (PostgreSQL: the unique key; SQLite: the write lock),
    then finds it and applies `delivered`."""
    mid = await _claimed(sessions)

    async def record() -> set[int]:
        async with transaction(sessions) as s:
            return await record_sent(s, accepted=[_accepted(mid)], now=T0)

    async with sessions() as cb, cb.begin():
        assert await record_receipt(
            cb, provider_id="SM9", status="delivered", error_code=None, at=T0
        )
        assert not await apply_receipt(cb, provider_id="SM9", now=T0)  # not recorded yet
        task = asyncio.ensure_future(record())
    assert await asyncio.wait_for(task, 10) == {mid}
    msg = await load(sessions, mid)
    assert (msg.status, msg.provider_id, msg.attempts) == (DELIVERED, "SM9", 1)


async def test_a_callback_arriving_while_the_sender_records_waits_and_applies(sessions):
    """The sender's transaction inserted the receipt first: the callback's insert waits for
    it to commit, then moves the receipt forward and finds the message `sent`."""
    mid = await _claimed(sessions)
    async with sessions() as snd, snd.begin():
        assert await record_sent(snd, accepted=[_accepted(mid)], now=T0) == {mid}
        task = asyncio.ensure_future(receipt(sessions, "delivered", provider_id="SM9"))
    assert await asyncio.wait_for(task, 10) is True
    assert (await load(sessions, mid)).status == DELIVERED


async def test_record_sent_skips_a_message_whose_claim_was_taken_over(sessions):
    mid = await _claimed(sessions)
    await set_status(sessions, mid, claimed_at=T0 + timedelta(minutes=6))  # another sender
    async with transaction(sessions) as s:
        assert await record_sent(s, accepted=[_accepted(mid)], now=T0) == set()
    assert (await load(sessions, mid)).status == SENDING
    assert (await history(sessions, mid))[-1][:2] == ("queued", "sending")
