"""Tiers (cards): reaching, renewing and losing them (DOMAIN.md §3; card tracker in `cards`).

The package holds one module per seam; this file only describes them (import from the
module that defines a name):

- `models.tiers.windows`: the calendar windows a rule sums over (pure functions);
- `models.tiers.meter`: summing a measure over a window, and judging reach/renew rules;
- `models.tiers.upgrade`: the upgrade after a purchase, pending tiers, eligible members;
- `models.tiers.review`: the daily review at the end of a validity;
- `models.tiers.progress`: how far a member is from the next level (the "积分" answer);
- `models.tiers.nudge`: which reach rule that answer may name.

The levels, their reach and renew rules come from `models.rules.TierRules`; Scheme A
(000) is the default, Schemes B (003) and C (004) ship in ``examples/``.

**Windows** are brand days (``purchases.local_date``), both ends included:

- ``single_purchase``: the one receipt being evaluated;
- ``day``: that day; ``month``: its calendar month;
- ``half_year``: the 6 calendar months ending on that day
  (2026-08-15 → 2026-02-16 .. 2026-08-15);
- ``period``: the annual tier period (``tiers.period_start``, e.g. 08-01) containing it;
- ``cumulative``: every purchase since joining;
- ``validity`` (renew rules only): the validity under review.

**Measures**: ``points`` = points earned by purchases (`Purchase.points`, bonuses such
as the birthday multiplier included; referral and visit points are not purchases and
do not count); ``spend`` = yuan paid (`Purchase.amount`).

**Upgrades** (`evaluate_after_purchase`, called for every recorded purchase): the
highest level above the member's current-or-pending tier with any reach rule met is
the target. With ``stepwise`` (Scheme A, 000 §16 "只能通過普通卡積分到達相應級別升級")
the member moves at most one level per evaluation: a member whose half-year already
covers diamond goes points → gold on one purchase and gold → diamond on the next
purchase that still qualifies. Never a downgrade here. What happens at the target:

============  =============  =======  ==========================================
effective     requires_card  apply    result
============  =============  =======  ==========================================
on_eligible   no             –        tier changes now (TierChange ``upgrade``)
on_eligible   yes            auto     tier changes now + a card application opens
on_eligible   yes            manual   tier changes now + flagged eligible (card not applied)
on_approval   yes            auto     a card application opens (TierChange ``eligible``)
on_approval   yes            manual   flagged eligible (TierChange ``eligible``);
                                      staff apply later (`cards.open_application`)
============  =============  =======  ==========================================

"Flagged eligible" = ``members.eligible_tier/eligible_since``; opening the card
application clears the flag (`eligible_not_applied` lists the flagged members,
003 "監督…累計消費滿5000的顧客是否有未申請銀卡的"). A TierChange with reason
``eligible`` records the day a member qualified; it does not change ``members.tier``.
With ``on_approval`` the tier changes when head office approves the card
(`cards.advance`, reason ``card_approved``). A pending tier (flagged, or an
application not yet approved for an ``on_approval`` level) counts as the member's
tier when the next move is chosen, so qualifying again flags nothing new, and a
rejected application lets the next qualifying purchase flag the member again.

**Validity and review** (`review_tiers`, a daily job): a level with ``valid_months``
holds from ``tier_since`` until ``tier_expires`` (exclusive: on that day it is
reviewed). The validity under review is ``[tier_expires - valid_months,
tier_expires - 1 day]``. If any renew rule is met — ``validity`` sums the whole
validity, ``single_purchase`` takes its biggest receipt, ``cumulative`` counts since
joining, other windows are anchored on the validity's last day — the tier is renewed
for another ``valid_months`` (``tier_since`` keeps the day it was first reached);
otherwise the member drops one level, whose own validity (if any) starts on the old
expiry day. Scheme C reading (004: "valid one year and renew only
if the period's points reach the threshold"): the period is the card's own year of
validity, so the example uses ``window = "validity"``; ``window = "period"`` would
instead read the annual tier period containing the card's last valid day.
"""
