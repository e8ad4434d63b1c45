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

from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.bulk.replay import LoadedMeter, Replay, later
from models.bulk.state import (
    Ids,
    MemberState,
    Row,
    history_start,
    load_members,
    member_defaults,
    shops,
)
from models.bulk.write import write_replay
from models.clock import local_date
from models.ledger import MEMBERS
from models.ownership import PURCHASE, establishes, new_assignment
from models.purchases.earning import purchase_points
from models.purchases.input import PurchaseIn
from models.purchases.record import enrolled, purchase_entries
from models.purchases.referral import referral_key, referral_note, referral_points
from models.returns import ReturnIn
from models.rules import LoyaltyRules
from models.tables.purchases import Purchase
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
        replay.items.extend({**i.model_dump(), "purchase_id": sale.id} for i in d.items)
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
        self.ownership(m, sale)

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

    def ownership(self, m: MemberState, sale: Row) -> None:
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
        a = Row(values, new=True)
        m.assignments.append(a)
        self.replay.assignments.append(a)
        m.assistant_id = owner_id


_STATE = frozenset(MemberState.__dataclass_fields__) - {
    "new",
    "changed",
    "sales",
    "returns",
    "assignments",
    "applications",
}


async def _sold_here(session: AsyncSession, receipts: set[str]) -> dict[str, tuple]:
    """Receipt number → (buyer's phone, referrer's phone) of stored sales."""
    if not receipts:
        return {}
    p = Purchase.__table__.c
    buyer, referrer = MEMBERS.alias("b"), MEMBERS.alias("r")
    stmt = (
        select(p.receipt_no, buyer.c.phone, referrer.c.phone)
        .join(buyer, buyer.c.id == p.member_id)
        .outerjoin(referrer, referrer.c.id == p.referrer_id)
        .where(p.receipt_no.in_(receipts))
    )
    return {r[0]: (r[1], r[2]) for r in (await session.exec(stmt)).all()}


async def record_receipts(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    records: list[PurchaseIn | ReturnIn],
) -> list[int]:
    """Record `records` (sales not yet recorded, with stores, assistants and cards that
    exist, and returns) in the caller's transaction. Returns the indexes of the records
    left for the one-by-one path (see the module docstring), to be recorded after this,
    in the same transaction, in order."""
    auto = rules.rewards.auto
    if auto.enabled and rules.rewards.by_code(auto.reward) is not None:
        return list(range(len(records)))
    sales = [d for d in records if isinstance(d, PurchaseIn)]
    if not sales:
        return list(range(len(records)))
    stores, assistants = await shops(session)
    first_day = min(local_date(d.at if d.at.tzinfo else d.at.replace(tzinfo=tz), tz) for d in sales)
    phones = {d.phone for d in sales if d.phone} | {d.referrer for d in sales if d.referrer}
    returned = await _sold_here(session, {d.receipt_no for d in records if isinstance(d, ReturnIn)})
    phones |= {phone for pair in returned.values() for phone in pair if phone}
    pg = session.bind.dialect.name == "postgresql"
    loaded = await load_members(
        session,
        phones=phones,
        cards={d.card_no for d in sales if d.card_no and not d.phone},
        since=history_start(rules.tiers, first_day),
        applications=any(lv.requires_card for lv in rules.tiers.levels),
        lock=pg,
    )
    now = utcnow()
    replay = Replay(rules, Ids(session, block=len(records) + 64), now, member_defaults(now))
    batch = _Batch(replay, tz, stores, assistants)
    for m in loaded:
        batch.by_phone[m.phone] = m
        if m.card_no:
            batch.by_card[m.card_no] = m
    left = _left_out(batch, records, returned, {m.phone for m in loaded if m.points < 0})
    for i, d in enumerate(records):
        if i not in left:
            await batch.sale(d)  # type: ignore[arg-type]
    replay.members.extend(m for m in loaded if m.changed)
    await write_replay(session, replay)
    return sorted(left)


def _left_out(
    batch: _Batch, records: list, returned: dict[str, tuple], owing: set[str]
) -> set[int]:
    """The indexes of the records the replay leaves to the one-by-one path."""

    def phone_of(d: PurchaseIn) -> str:
        m = batch.buyer(d)
        return m.phone if m is not None else d.phone or f"card:{d.card_no}"

    hard = set(owing)
    sold: dict[str, tuple] = dict(returned)
    for d in records:
        if isinstance(d, ReturnIn):
            hard.update(p for p in sold.get(d.receipt_no, ()) if p)
        else:
            sold[d.receipt_no] = (phone_of(d), d.referrer)
            if d.vouchers:
                hard.add(phone_of(d))
    referrals = [(phone_of(d), d.referrer) for d in records if isinstance(d, PurchaseIn)]
    referrals = [pair for pair in referrals if pair[1]]
    grew = True
    while grew:  # a referral joins its two members' fates
        grew = False
        for buyer, referrer in referrals:
            if (buyer in hard) != (referrer in hard):
                hard.update((buyer, referrer))
                grew = True
    return {i for i, d in enumerate(records) if isinstance(d, ReturnIn) or phone_of(d) in hard}
