"""Test data factories: insert rows directly with sensible defaults.

Each factory adds the row and flushes (so it has an id); none commits — the test
owns the transaction. Import them in any test file:

    from tests.factories import make_assistant, make_member, make_store
"""

from __future__ import annotations

from datetime import date

from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables.members import Assistant, Member, Store


async def make_store(
    session: AsyncSession, *, code: str = "S001", name: str = "南京西路店", city: str = "上海"
) -> Store:
    store = Store(code=code, name=name, city=city)
    session.add(store)
    await session.flush()
    return store


async def make_assistant(
    session: AsyncSession, *, store: Store, code: str = "A001", name: str = "王丽"
) -> Assistant:
    assistant = Assistant(code=code, name=name, store_id=store.id)
    session.add(assistant)
    await session.flush()
    return assistant


def _split_birthday(birthday: str | None) -> tuple[int | None, int | None, int | None]:
    """'05-20' → (None, 5, 20); '1990-05-20' → (1990, 5, 20); None → (None, None, None)."""
    if not birthday:
        return None, None, None
    parts = [int(p) for p in birthday.split("-")]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return parts[0], parts[1], parts[2]


async def make_member(
    session: AsyncSession,
    *,
    phone: str = "+8613800138000",
    name: str = "张三",
    store: Store | None = None,
    assistant: Assistant | None = None,
    birthday: str | None = None,
    birthday_calendar: str = "solar",
    birthday_leap_month: bool = False,
    join_date: date = date(2026, 1, 1),
    tier: str = "points",
    points: int = 0,
) -> Member:
    """A member row. `points` sets the balance column only (no ledger entry or lot):
    use `models.points.post_points` when a test needs a consistent ledger."""
    year, month, day = _split_birthday(birthday)
    member = Member(
        phone=phone,
        name=name,
        store_id=store.id if store else None,
        assistant_id=assistant.id if assistant else None,
        birthday_year=year,
        birthday_month=month,
        birthday_day=day,
        birthday_calendar=birthday_calendar,
        birthday_leap_month=birthday_leap_month,
        join_date=join_date,
        tier=tier,
        points=points,
    )
    session.add(member)
    await session.flush()
    return member
