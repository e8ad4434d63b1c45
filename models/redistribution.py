"""How the day's taken-back members are handed out again (`models.probation.redistribute`).

Pure: the members due, each store's active assistants, who owned whom before and the
current load go in; member id → new assistant id comes out. `rng` is the only chance.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Due:
    """A member taken back: the closing assignment, the old owner, tier and store."""

    assignment_id: int
    member_id: int
    from_assistant_id: int
    tier: str
    store_id: int


def plan_redistribution(
    due: list[Due],
    *,
    staff: dict[int, list[int]],
    owned_before: dict[int, set[int]],
    load: Counter[tuple[int, str]],
    tier_rank: dict[str, int],
    rng: random.Random,
) -> dict[int, int | None]:
    """Member id → new assistant id (None: nobody eligible). Pure; `rng` is the only chance.

    Members are grouped by (store, tier), highest tier first. In a group, members
    with the fewest eligible assistants are placed first (random order among
    equals); each goes to the eligible assistant with the fewest members of this
    group so far, then fewest members given today in any tier, then the smallest
    current load of that tier, then of all tiers, then a random rank. A final pass
    moves members from busier to idler eligible assistants until no move narrows
    a gap of two or more, so the group is spread as evenly as eligibility allows.
    """
    everyone = sorted({a for ids in staff.values() for a in ids})
    rank = {a: rng.random() for a in everyone}
    load_total: Counter[int] = Counter()
    for (a, _tier), n in load.items():
        load_total[a] += n
    given_total: Counter[int] = Counter()
    result: dict[int, int | None] = {}
    groups: dict[tuple[int, str], list[Due]] = defaultdict(list)
    for d in due:
        groups[(d.store_id, d.tier)].append(d)
    for store_id, tier in sorted(groups, key=lambda k: (k[0], -tier_rank.get(k[1], 0))):
        members = groups[(store_id, tier)]
        rng.shuffle(members)
        eligible = {
            d.member_id: [a for a in staff.get(store_id, []) if a not in owned_before[d.member_id]]
            for d in members
        }
        members.sort(key=lambda d: len(eligible[d.member_id]))
        given: Counter[int] = Counter()
        for d in members:
            options = eligible[d.member_id]
            if not options:
                result[d.member_id] = None
                continue
            best = min(
                options,
                key=lambda a, t=tier: (
                    given[a],
                    given_total[a],
                    load[(a, t)],
                    load_total[a],
                    rank[a],
                ),
            )
            given[best] += 1
            given_total[best] += 1
            result[d.member_id] = best
        _even_out(members, eligible, result, given, given_total)
    return result


def _even_out(
    members: list[Due],
    eligible: dict[int, list[int]],
    result: dict[int, int | None],
    given: Counter[int],
    given_total: Counter[int],
) -> None:
    """Move a member from its assistant to an eligible one with at least two fewer of
    the group, until none can move. Each move shrinks the sum of squared counts, so
    this ends."""
    moved = True
    while moved:
        moved = False
        for d in members:
            hi = result[d.member_id]
            if hi is None:
                continue
            lo = min(eligible[d.member_id], key=lambda a: given[a])
            if given[hi] - given[lo] >= 2:
                result[d.member_id] = lo
                given[hi] -= 1
                given_total[hi] -= 1
                given[lo] += 1
                given_total[lo] += 1
                moved = True
