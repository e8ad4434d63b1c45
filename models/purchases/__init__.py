"""Purchases and the points they earn; visits and staff corrections (DOMAIN.md §2).

The package holds one module per seam; this file only describes them (import from the
module that defines a name):

- `models.purchases.input`: `PurchaseIn` / `ItemIn`, a purchase as the API and the CSV
  import receive it, validated;
- `models.purchases.earning`: the points a purchase earns (multipliers, birthday,
  double-points days) — pure functions;
- `models.purchases.record`: `record_purchase`, which resolves store, assistant and member
  (enrolling a new phone), refuses a receipt number reused for another sale, inserts the
  purchase once, updates the totals and posts the points;
- `models.purchases.referral`: the referrer's share of a new member's first purchase;
- `models.purchases.visits`: visit points and staff corrections (`record_visit`,
  `adjust_points`).

A purchase earns ``floor(amount × rate × item multiplier × day multiplier)`` points:

- ``rate``: points per yuan (default 1, 000 "每消費1元積1分").
- item multiplier: for each item ``multipliers[brand]``, else
  ``multipliers[category]``, else 1, capped at ``max_multiplier`` (004: never above
  the contract rate), averaged weighted by the items' amounts; 1 without items.
- day multiplier: the larger of the member's tier birthday multiplier, when the
  sale's brand day is the member's birthday (solar or lunar, `models.calendar`;
  default gold and diamond ×2, 000), and ``double_points_multiplier`` on a
  double-points day (``YYYY-MM-DD`` once, ``MM-DD`` every year; 000 §21).

Ledger entries of a purchase (keys make a re-sent receipt harmless):

- ``purchase:<id>`` reason ``purchase``: the base points (amount × rate × item
  multiplier). On a double-points day (when that is the larger day multiplier)
  the doubled total is posted here in one entry, with the note
  ``double_points_day x<multiplier>``.
- ``birthday:<id>`` reason ``birthday_bonus``: the extra points of the birthday
  multiplier (a tie with a double-points day counts as the birthday).
- ``referral:<id>`` reason ``referral``, to the referrer: ``floor(amount ×
  referral_share)`` (default 30 %) of the new member's first purchase (000).

Entries of zero points are not posted. `Purchase.points` is the member's total
(base + bonus), not the referrer's share. The first purchase is the member's first
*recorded* one (``purchases_count`` becomes 1); the referrer must be another,
existing member (else no referral, and no error); ``members.referrer_id`` is set
only if still empty.

In the same transaction the member's totals change: ``cumulative_spend``,
``purchases_count``, ``first_purchase_at`` / ``last_purchase_at`` (min / max, as
imports may arrive out of order) and ``updated_at`` (the latest event time seen;
domain code reads no clock).

The same ``receipt_no`` twice — in sequence or at the same instant — records one
purchase: the insert is ``ON CONFLICT (receipt_no) DO NOTHING`` and the loser
returns the winner's row with no other effect. (A first-time phone sent with a
receipt number that another request is recording at that very instant may leave
that new member enrolled; nothing else.)
"""
