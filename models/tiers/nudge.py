"""Upgrade nudges: which reach rule the points answer may name ("再积 X 分可升级…").

A nudge says only what the member can still do (docs/loyalty-rules.md "Upgrade
nudges"): a rule whose deadline is today, past, or fewer than `NUDGE_MIN_DAYS`
days away is not named; when no rule is left, the answer shows the tier and no
upgrade line.
"""

from __future__ import annotations

from datetime import date

from models.tiers.progress import RuleProgress, TierProgress

NUDGE_MIN_DAYS = 7
"""A nudge names a rule only when its deadline is at least this many days after today:
a week leaves time for a visit."""


def can_still_meet(progress: RuleProgress, today: date | None) -> bool:
    """Whether a nudge may name this rule on `today`: nothing is missing, or there is no
    deadline (``single_purchase``, ``cumulative``), or the deadline (``buy_by``) is at
    least `NUDGE_MIN_DAYS` days away. So a ``day`` rule (deadline today) is never named,
    nor a month's or period's rule in its last days, nor a half year's just before a
    counted purchase leaves it. Without a `today` every rule may be named."""
    if today is None or progress.buy_by is None or progress.missing <= 0:
        return True
    return (progress.buy_by - today).days >= NUDGE_MIN_DAYS


def upgrade_nudge(progress: TierProgress) -> RuleProgress | None:
    """The closest rule (least missing relative to its threshold) among those the member
    can still meet on ``progress.today``; None: no upgrade nudge today."""
    doable = [r for r in progress.rules if can_still_meet(r, progress.today)]
    return min(doable, key=lambda r: r.missing / r.rule.threshold) if doable else None
