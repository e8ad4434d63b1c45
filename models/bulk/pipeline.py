"""Two batches of a bulk import in flight at once (PostgreSQL): batch k + 1 reads and
replays while batch k is written, so the import's CPU and the database's work overlap.

`Turn` orders them: each batch's write waits for the previous batch's commit
(`after_previous`). A purchase batch reads the state the previous one left through
`Carry`: the members it replayed, as they are after its replay (the database shows them
only once it commits), and what it left to the one-by-one path (`hard`, whose state only
the commit shows: a batch touching one of those waits for the commit before it reads).
Before it writes, a batch that used carried members locks their rows and compares them
with the carried state (`models.bulk.state.verify_carried`); if the previous batch did not
land as replayed or another writer changed one of them meanwhile, it raises `Stale` and
is replayed again from the database, alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from models.bulk.state import MemberState


class Stale(Exception):
    """The state a batch replayed from is not what the database holds: replay it again."""


@dataclass
class Carry:
    """A purchase batch's members after its replay, for the next batch."""

    by_phone: dict[str, MemberState]
    by_card: dict[str, MemberState]
    since: date | None
    """The earliest sale day every carried member's loaded history covers (None: all)."""
    hard: set[str] = field(default_factory=set)
    """Phones (and ``card:`` keys) of records left to the one-by-one path."""
    sold: dict[str, tuple] = field(default_factory=dict)
    """Receipt number → (buyer phone, referrer phone) of the batch's sales."""
    basis: asyncio.Future[bool] | None = None
    """Whether the batch this one replayed on from landed (None: it read the database)."""

    def covers(self, since: date | None) -> bool:
        """Whether the carried histories reach back to `since`."""
        return self.since is None or (since is not None and self.since <= since)


class Turn:
    """A batch's place in the import: the previous batch's turn, whether this one has
    replayed (`replayed`, with its `carry`) and committed (`settle`)."""

    def __init__(self, previous: Turn | None):
        self.previous = previous
        self.carry: Any = None
        """What this batch hands to the next: a purchase batch's `Carry`; a member batch's
        phones and card numbers."""
        self.replayed = asyncio.Event()
        self._landed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.uses: int = 0
        """Carried members this batch replayed from (a measure for tests and benches)."""

    async def previous_carry(self) -> Any:
        """The previous batch's carry, once it has replayed (None: there is none to use,
        or it was built on a batch that did not land: the database is then read after the
        previous batch settles, which stops a failure from spreading down the file)."""
        if self.previous is None:
            return None
        await self.previous.replayed.wait()
        carry = self.previous.carry
        basis = getattr(carry, "basis", None)
        if basis is not None and not (basis.done() and basis.result()):
            return None
        return carry

    def basis(self) -> asyncio.Future[bool] | None:
        """What a carry built on the previous batch's rests on (`Carry.basis`)."""
        return self.previous._landed if self.previous is not None else None

    async def after_previous(self) -> bool:
        """Wait until the previous batch is settled in the database; True if its bulk
        transaction landed as it replayed (its carry is what the database holds)."""
        if self.previous is None:
            return True
        return await asyncio.shield(self.previous._landed)

    def done_replaying(self, carry: Any) -> None:
        self.carry = carry
        self.replayed.set()

    def settle(self, landed: bool) -> None:
        """The batch is settled (committed or redone); `landed`: as replayed first."""
        self.replayed.set()
        if not self._landed.done():
            self._landed.set_result(landed)
        self.previous = None  # the chain behind is settled: let it go
