"""A batch of purchases recorded in bulk (`record_receipts`): replayed in file order in
memory with the rule functions `record_purchase` calls, then written a table at a time
(`models.bulk.write`).

What the replay models is everything `record_purchase` does for a sale without vouchers:
the buyer (a new phone enrolled), the points (`purchase_points`, `purchase_entries`, lots
dated by `expiry_date`), the member's totals, the referral of a first purchase, the tier
upgrade (`base_index`, `upgrade_target` measuring the member's loaded sales and returns,
`apply_upgrade`, the card application `cards.open_application` would open) and the
ownership (`ownership.establishes`, `new_assignment`). What it does not model is left,
in order, to the one-by-one path, with every other record of the members it touches:

- a sale using vouchers at the till, and returns (`models.returns`, which also take
  back the referrer's share);
- members whose balance is below zero (a return's debt: earnings pay the debt lots);
- the automatic voucher (`rewards.auto`): when it is on, nothing is recorded in bulk;
- a referral between such a member and another (the referrer is then left out too).

The left-out records touch only left-out members, so recording them after the bulk
rows gives the same rows as recording everything in file order.
"""

from __future__ import annotations

import asyncio
from datetime import date
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.bulk.pipeline import Carry, Stale, Turn
from models.bulk.replay import LoadedMeter, Replay, later
from models.bulk.split import left_out, sold_here
from models.bulk.state import (
    Ids,
    MemberState,
    Row,
    expected_state,
    history_start,
    load_members,
    member_defaults,
    shops,
    verify_carried,
)
from models.bulk.write import Writer, replay_steps
from models.clock import local_date
from models.db import is_postgres
from models.ownership import PURCHASE, establishes, new_assignment
from models.purchases.earning import purchase_points
from models.purchases.input import PurchaseIn
from models.purchases.record import enrolled, purchase_entries
from models.purchases.referral import referral_key, referral_note, referral_points
from models.returns import ReturnIn
from models.rules import LoyaltyRules
from models.tiers.upgrade import (
    APPLY,
    FLAG,
    apply_upgrade,
    base_index,
    needs_applications,
    upgrade_target,
)
from models.types import utcnow


class _Batch:
    """One batch's replay: members by phone and card, stores and assistants."""

    def __init__(self, replay: Replay, tz: ZoneInfo, stores, assistants):
        self.replay, self.rules, self.tz = replay, replay.rules, tz
        self.stores, self.assistants = stores, assistants
        self.by_phone: dict[str, MemberState] = {}
        self.by_card: dict[str, MemberState] = {}

    def buyer(self, d: PurchaseIn) -> MemberState | None:
        return self.by_phone.get(d.phone) if d.phone else self.by_card.get(d.card_no or "")

    async def enrol(self, phone: str, store_id: int, day: date) -> MemberState:
        values = self.replay.defaults | enrolled(
            self.rules, phone=phone, store_id=store_id, day=day
        )
        values["id"] = await self.replay.ids.next("members")
        m = MemberState(**{k: values.pop(k) for k in list(values) if k in _STATE})
        m.new = values
        self.by_phone[phone] = m
        self.replay.members.append(m)
        return m

    async def sale(self, d: PurchaseIn) -> None:
        """`record_purchase` of a sale without vouchers, in memory."""
        rules, replay = self.rules, self.replay
        at = d.at if d.at.tzinfo is not None else d.at.replace(tzinfo=self.tz)
        day = local_date(at, self.tz)
        store = self.stores[d.store]
        assistant = self.assistants[d.assistant] if d.assistant else None
        m = self.buyer(d) or await self.enrol(d.phone or "", store.id, day)
        base, bonus, kind = purchase_points(
            rules.points,
            member=m,
            amount=d.amount,
            items=d.items,
            day=day,  # type: ignore[arg-type]
        )
        sale = Row(
            dict(
                id=await replay.ids.next("purchases"),
                receipt_no=d.receipt_no,
                member_id=m.id,
                store_id=store.id,
                assistant_id=assistant.id if assistant else None,
                amount=d.amount,
                at=at,
                local_date=day,
                points=base + bonus,
                referrer_id=None,
                created_at=replay.now,
            ),
            new=True,
        )
        replay.purchases.append(sale)
        replay.items.extend(
            dict(
                sku=i.sku,
                name=i.name,
                category=i.category,
                brand=i.brand,
                qty=i.qty,
                amount=i.amount,
                purchase_id=sale.id,
            )
            for i in d.items
        )
        # `_add_to_totals`
        m.cumulative_spend += d.amount
        m.purchases_count += 1
        if m.first_purchase_at is None or m.first_purchase_at > at:
            m.first_purchase_at = at
        m.last_purchase_at = later(m.last_purchase_at, at)
        m.updated_at = later(m.updated_at, at)
        m.changed = True
        for delta, reason, key, note in purchase_entries(
            rules.points, purchase_id=sale.id, base=base, bonus=bonus, kind=kind
        ):
            await replay.post(m, delta=delta, reason=reason, key=key, note=note, sale=sale)
        if m.purchases_count == 1 and d.referrer:
            await self.referral(m, d.referrer, sale)
        m.sales.append((day, sale.points, d.amount))
        await self.upgrade(m, sale)
        await self.ownership(m, sale)

    async def referral(self, m: MemberState, phone: str, sale: Row) -> None:
        """`credit_referrer` in memory."""
        referrer = self.by_phone.get(phone)
        if referrer is None or referrer is m:
            return
        sale.values["referrer_id"] = referrer.id
        if m.referrer_id is None:
            m.referrer_id = referrer.id
        points = referral_points(self.rules.points, sale.amount)
        if points > 0:
            await self.replay.post(
                referrer,
                delta=points,
                reason="referral",
                key=referral_key(sale.id),
                note=referral_note(m.id),
                sale=sale,
            )

    async def upgrade(self, m: MemberState, sale: Row) -> None:
        """`evaluate_after_purchase` in memory."""
        tiers = self.rules.tiers
        waiting = (
            [a.tier for a in m.applications if a.status in cards.OPEN]
            if needs_applications(tiers)
            else []
        )
        base = base_index(self.rules, m, waiting)  # type: ignore[arg-type]
        meter = LoadedMeter(m, tiers)
        target = await upgrade_target(tiers, base=base, meter=meter, purchase=sale)  # type: ignore[arg-type]
        if target is None:
            return
        change, card = apply_upgrade(tiers, member=m, target=target, purchase=sale)  # type: ignore[arg-type]
        self.replay.tier_changes.append(change)
        if card == APPLY:
            await self.replay.open_application(m, target.code, sale)
        elif card == FLAG and not any(a.tier == target.code for a in m.applications):
            m.eligible_tier, m.eligible_since = target.code, sale.local_date

    async def ownership(self, m: MemberState, sale: Row) -> None:
        """`ownership.on_purchase` in memory."""
        if m.assignments:
            for a in m.assignments:
                if establishes(a, sale.local_date):
                    a.set(established=True)
                    if not a.new:
                        self.replay.assignments.append(a)
            return
        owner_id = m.assistant_id or sale.assistant_id
        owner = self.assistants.get(owner_id) if owner_id is not None else None
        if owner is None or not owner.active:
            return
        values = new_assignment(
            self.rules, m.id, owner_id, on=sale.local_date, reason=PURCHASE
        ) | dict(established=True, ended_on=None, end_reason=None)
        # numbered here: the next batch may update it (`models.bulk.pipeline`)
        values["id"] = await self.replay.ids.next("assignments")
        a = Row(values, new=True)
        m.assignments.append(a)
        self.replay.assignments.append(a)
        m.assistant_id = owner_id


YIELD_EVERY = 16
"""Sales replayed between two turns of the event loop: a replay is ~50 ms of CPU, and the
batch before, being written meanwhile (`models.bulk.pipeline`), needs a turn to send each
of its statements."""

_STATE = frozenset(MemberState.__dataclass_fields__) - {
    "new",
    "changed",
    "sales",
    "returns",
    "assignments",
    "applications",
}


async def record_receipts(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    records: list[PurchaseIn | ReturnIn],
    turn: Turn | None = None,
) -> list[int]:
    """Record `records` (sales not yet recorded, with stores, assistants and cards that
    exist, and returns) in the caller's transaction. Returns the indexes of the records
    left for the one-by-one path (see the module docstring), to be recorded after this,
    in the same transaction, in order.

    With a `turn` (`models.bulk.pipeline`) the batch reads and replays while the
    previous one is written, and writes after its commit; `Stale` if the state it
    replayed from turned out not to be the database's."""
    auto = rules.rewards.auto
    sales = [d for d in records if isinstance(d, PurchaseIn)]
    if (auto.enabled and rules.rewards.by_code(auto.reward) is not None) or not sales:
        if turn is not None:
            turn.done_replaying(None)
            await turn.after_previous()
        return list(range(len(records)))
    carry = await turn.previous_carry() if turn is not None else None
    first_day = min(local_date(d.at if d.at.tzinfo else d.at.replace(tzinfo=tz), tz) for d in sales)
    since = history_start(rules.tiers, first_day)
    if carry is not None and not carry.covers(since):
        carry = None
    if carry is None and turn is not None:
        await turn.after_previous()  # the database then holds what the previous batch did
    stores, assistants = await shops(session)
    phones = {d.phone for d in sales if d.phone} | {d.referrer for d in sales if d.referrer}
    back = {d.receipt_no for d in records if isinstance(d, ReturnIn)}
    returned = await sold_here(session, back)
    if carry is not None:
        returned |= {no: carry.sold[no] for no in back if no in carry.sold}
    phones |= {phone for pair in returned.values() for phone in pair if phone}
    cards = {d.card_no for d in sales if d.card_no and not d.phone}
    if carry is not None and (phones | {f"card:{c}" for c in cards}) & carry.hard:
        await turn.after_previous()  # type: ignore[union-attr]
        carry = None
    carried, expected = _carried(carry, phones, cards)
    applications = any(lv.requires_card for lv in rules.tiers.levels)
    loaded = await load_members(
        session,
        phones=phones - {m.phone for m in carried},
        cards=cards - {m.card_no for m in carried},
        since=since,
        applications=applications,
        lock=is_postgres(session),
    )
    now = utcnow()
    replay = Replay(rules, Ids(session, block=len(records) + 64), now, member_defaults(now))
    batch = _Batch(replay, tz, stores, assistants)
    for m in [*carried, *loaded]:
        batch.by_phone[m.phone] = m
        if m.card_no:
            batch.by_card[m.card_no] = m
    owing = {m.phone for m in loaded if m.points < 0}
    left, hard, sold = left_out(batch.buyer, records, returned, owing)
    for i, d in enumerate(records):
        if i not in left:
            await batch.sale(d)  # type: ignore[arg-type]
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # the batch being written meanwhile sends its next statement
    replay.members.extend(m for m in [*carried, *loaded] if m.changed)
    writer = await Writer.of(session)
    steps = replay_steps(writer, replay)
    if turn is not None:
        turn.uses = len(carried)
        basis = turn.basis() if carried else None
        turn.done_replaying(_carry(batch, since, hard, sold, basis))
        landed = await turn.after_previous()
        if carried and not (
            landed and await verify_carried(session, carried, expected, applications=applications)
        ):
            raise Stale("the members carried from the previous batch changed")
    await writer.run(steps)
    return sorted(left)


def _carried(
    carry: Carry | None, phones: set[str], cards: set[str]
) -> tuple[list[MemberState], dict[int, tuple]]:
    """The members of `carry` this batch names, made ready to replay on (what the previous
    batch inserted is stored now: its rows are updated from here), and their state as the
    previous batch left it (`expected_state`, by id: nothing changed them since)."""
    if carry is None:
        return [], {}
    found = {id(m): m for m in (carry.by_phone.get(p) for p in phones) if m is not None}
    found |= {id(m): m for m in (carry.by_card.get(c) for c in cards) if m is not None}
    for m in found.values():
        m.new, m.changed = None, False
        for row in (*m.assignments, *m.applications):
            row.new = row.changed = False
    members = list(found.values())
    return members, {m.id: expected_state(m) for m in members}


def _carry(batch: _Batch, since, hard: set[str], sold: dict[str, tuple], basis) -> Carry:
    """What the next batch may replay on: this batch's members but those left to the
    one-by-one path, as they are after the replay."""
    members = [m for m in batch.by_phone.values() if m.phone not in hard]
    return Carry(
        by_phone={m.phone: m for m in members},
        by_card={m.card_no: m for m in members if m.card_no},
        since=since,
        hard=hard,
        sold=sold,
        basis=basis,
    )
