"""The rows a bulk replay writes (`Replay`) and the ledger and card steps it replays for
a member (`Replay.post`, `Replay.open_application`); the tier measures over a member's
loaded history (`LoadedMeter`). `models.bulk.receipts` drives the replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from models import cards
from models.bulk.state import Ids, MemberState, Row
from models.points import expiry_date
from models.rules import LoyaltyRules, Measure
from models.tiers.meter import Meter
from models.tiers.upgrade import card_note
from models.tiers.windows import Span


class LoadedMeter(Meter):
    """The tier measures over a member's loaded sales and returns (`MemberState`), as
    `measure_total` sums them in the database (returns on the day of their sale)."""

    def __init__(self, member: MemberState, tiers):
        super().__init__(None, member.id, tiers)  # type: ignore[arg-type]
        self.member = member

    async def measure(self, what: Measure, span: Span, largest: bool) -> Decimal:
        start, end = span
        i = 1 if what == "points" else 2
        total = Decimal(0)
        for rows, sign in ((self.member.sales, 1), (self.member.returns, -1)):
            for row in rows:
                day = row[0]
                if (start is None or day >= start) and (end is None or day <= end):
                    total += sign * row[i]
        return total


def later(stored: datetime | None, at: datetime) -> datetime:
    """`models.ledger.latest` in memory: the later of a nullable time and `at`."""
    return at if stored is None or stored < at else stored


@dataclass
class Replay:
    """The rows a replay writes."""

    rules: LoyaltyRules
    ids: Ids
    now: datetime
    defaults: dict[str, Any]
    """A new member's columns by default (`member_defaults`)."""
    members: list[MemberState] = field(default_factory=list)
    purchases: list[Row] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    lots: list[dict[str, Any]] = field(default_factory=list)
    tier_changes: list[dict[str, Any]] = field(default_factory=list)
    applications: list[Row] = field(default_factory=list)
    card_events: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[Row] = field(default_factory=list)

    async def post(
        self, m: MemberState, *, delta: int, reason: str, key: str, note: str, sale: Row
    ) -> None:
        """`models.ledger.write_entry` of an earning for a member whose balance is not
        below zero (the replay leaves the others out): balance, entry, lot."""
        m.points += delta
        m.updated_at = later(m.updated_at, sale.at)
        m.changed = True
        entry_id = await self.ids.next("points_ledger")
        self.entries.append(
            dict(
                id=entry_id,
                member_id=m.id,
                delta=delta,
                reason=reason,
                at=sale.at,
                local_date=sale.local_date,
                key=key,
                balance_after=m.points,
                purchase_id=sale.id,
                note=note[:200],
            )
        )
        self.lots.append(
            dict(
                member_id=m.id,
                entry_id=entry_id,
                earned_on=sale.local_date,
                expires_on=expiry_date(self.rules.points.expiry, sale.local_date),
                points=delta,
                remaining=delta,
            )
        )

    async def open_application(self, m: MemberState, tier: str, sale: Row) -> None:
        """`cards.open_application` (actor "system") in memory."""
        if any(app.tier == tier for app in m.applications):
            return
        at = sale.at
        for app in cards.replaced_by(m.applications, tier, self.rules):
            self.card_events.append(
                dict(
                    application_id=app.id,
                    from_status=app.status,
                    to_status="cancelled",
                    at=at,
                    actor="system",
                    note=cards.replaced_note(tier),
                )
            )
            app.set(status="cancelled", updated_at=at)
            m.applications.remove(app)
            if not app.new:
                self.applications.append(app)
        app = Row(
            dict(
                id=await self.ids.next("card_applications"),
                member_id=m.id,
                tier=tier,
                status="applied",
                store_id=sale.store_id,
                assistant_id=sale.assistant_id or m.assistant_id,
                pickup_date=None,
                mail_address=None,
                created_at=at,
                updated_at=at,
            ),
            new=True,
        )
        m.applications.append(app)
        self.applications.append(app)
        self.card_events.append(
            dict(
                application_id=app.id,
                from_status="",
                to_status="applied",
                at=at,
                actor="system",
                note=card_note(sale),  # type: ignore[arg-type]
            )
        )
        if cards.clears_eligible(m.eligible_tier, tier, self.rules):
            m.eligible_tier = m.eligible_since = None
