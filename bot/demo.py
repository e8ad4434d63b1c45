"""Demo data for `memberbot serve --demo` (CONTRACT.md: "--demo also seeds a demo store,
assistants and members so a newcomer can chat with it at once").

Everything is made through the same domain functions as real data
(`upsert_store`, `create_or_update_assistant`, `upsert_member`, `record_purchase`,
`consent.stop`), so points, tiers and the care calendar are real. Seeding is
idempotent: a second run (or a restart with --demo) adds nothing, and demo
members that already exist are left as they are.

What a newcomer can use (documented in the README):

- Brand ``云衫服饰`` (`DEMO_BRAND`) when `brand.name` is not configured.
- Store ``DEMO01`` 演示店·南京西路 (上海).
- Assistants ``A001`` 王丽 and ``A002`` 李娜, with the fixed tokens
  ``demo-token-A001`` and ``demo-token-A002`` (for `POST /api/greetings` and the
  staff console at ``/staff/``). 李娜 is the store manager (role ``manager``: the
  console shows her the whole store and the manager page).
- Operator API key ``demo-api-key-please-change`` — only when no `api.keys` are
  configured; `serve --demo` then prints a warning.
- Members (chat with them as ``memberbot chat --from <phone>``):

  ========================  ======  ==================================================
  phone                     name    what to look at
  ========================  ======  ==================================================
  +8613800138001            张伟    solar birthday 05-20; a purchase 20 days ago
  +8613800138002            陈静    lunar birthday 08-15 (中秋); no purchase yet
  +8613800138003            刘洋    gold card: 3,380 points from two purchases
  +8613800138004            赵敏    bought yesterday (points notice due today)
  +8613800138005            孙丽    replied 不接受: proactive messages stopped
  ========================  ======  ==================================================

Purchase dates are relative to the day of the first seeding (receipts
``DEMO-0001`` …); later runs find them already recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent
from models.member_input import MemberIn
from models.members import get_member_by_phone, upsert_member
from models.purchases.input import ItemIn, PurchaseIn
from models.purchases.record import record_purchase
from models.settings import Settings
from models.stores import create_or_update_assistant, hash_token, upsert_store

DEMO_API_KEY = "demo-api-key-please-change"
DEMO_BRAND = "云衫服饰"
"""The demo's brand name (members are greeted by it), unless `brand.name` is configured."""
DEMO_STORE = ("DEMO01", "演示店·南京西路", "上海")
DEMO_ASSISTANTS = (("A001", "王丽"), ("A002", "李娜"))
DEMO_MANAGER = "A002"


def demo_overrides(settings: Settings) -> dict:
    """Settings overrides of a demo run: the demo brand name when `brand.name` is not
    configured (else every greeting would come from "memberbot")."""
    if "name" in settings.brand.model_fields_set:
        return {}
    return {"brand": {"name": DEMO_BRAND}}


def demo_token(code: str) -> str:
    """The fixed, documented token of a demo assistant (never use these outside a demo)."""
    return f"demo-token-{code}"


@dataclass(frozen=True)
class _DemoPurchase:
    receipt_no: str
    days_ago: int
    amount: str
    items: tuple[tuple[str, str, str, str], ...]  # sku, name, category, amount


@dataclass(frozen=True)
class _DemoMember:
    phone: str
    fields: dict
    purchases: tuple[_DemoPurchase, ...] = ()
    stopped: bool = False


DEMO_MEMBERS = (
    _DemoMember(
        "+8613800138001",
        {"name": "张伟", "gender": "M", "birthday": "1988-05-20", "assistant": "A001"},
        (_DemoPurchase("DEMO-0001", 20, "599.00", (("SH-1001", "纯棉衬衫", "衬衫", "599.00"),)),),
    ),
    _DemoMember(
        "+8613800138002",
        {
            "name": "陈静",
            "gender": "F",
            "birthday": "08-15",
            "birthday_calendar": "lunar",
            "assistant": "A002",
            "preferred_contact": "19:00-21:00",
        },
    ),
    _DemoMember(
        "+8613800138003",
        {
            "name": "刘洋",
            "gender": "M",
            "birthday": "11-02",
            "wedding_anniversary": "2015-10-01",
            "assistant": "A001",
        },
        (
            _DemoPurchase(
                "DEMO-0002",
                60,
                "1880.00",
                (
                    ("CT-2001", "羊毛大衣", "外套", "1580.00"),
                    ("SC-3001", "羊绒围巾", "配饰", "300.00"),
                ),
            ),
            _DemoPurchase(
                "DEMO-0003", 30, "1500.00", (("SU-4001", "商务西装", "西装", "1500.00"),)
            ),
        ),
    ),
    _DemoMember(
        "+8613800138004",
        {"name": "赵敏", "gender": "F", "birthday": "03-08", "assistant": "A002"},
        (
            _DemoPurchase(
                "DEMO-0004",
                1,
                "458.00",
                (
                    ("DR-5001", "真丝连衣裙", "连衣裙", "398.00"),
                    ("SK-5002", "丝袜", "配饰", "60.00"),
                ),
            ),
        ),
    ),
    _DemoMember(
        "+8613800138005",
        {"name": "孙丽", "gender": "F", "birthday": "12-24", "assistant": "A002"},
        stopped=True,
    ),
)


async def _seed_store(session: AsyncSession) -> None:
    code, name, city = DEMO_STORE
    await upsert_store(session, code=code, name=name, city=city)
    for a_code, a_name in DEMO_ASSISTANTS:
        assistant, _created, _token = await create_or_update_assistant(
            session,
            code=a_code,
            name=a_name,
            store_code=code,
            role="manager" if a_code == DEMO_MANAGER else "assistant",
        )
        assistant.token_hash = hash_token(demo_token(a_code))
        session.add(assistant)
    await session.flush()


async def seed_demo(session: AsyncSession, *, settings: Settings, today: date) -> None:
    """Create the demo store, assistants and members (see the module docstring). Idempotent."""
    rules, tz = settings.loyalty, settings.brand.tz
    await _seed_store(session)
    store_code = DEMO_STORE[0]
    for demo in DEMO_MEMBERS:
        if await get_member_by_phone(session, phone=demo.phone) is not None:
            continue  # keep whatever the newcomer has done with it since
        data = MemberIn(phone=demo.phone, store=store_code, **demo.fields)
        # A member is enrolled at the till on their first purchase.
        joined = today - timedelta(days=max((p.days_ago for p in demo.purchases), default=0))
        member, _created = await upsert_member(session, rules=rules, tz=tz, data=data, today=joined)
        for p in demo.purchases:
            day = today - timedelta(days=p.days_ago)
            at = datetime.combine(day, time(15, 30), tzinfo=tz)
            await record_purchase(
                session,
                rules=rules,
                tz=tz,
                data=PurchaseIn(
                    receipt_no=p.receipt_no,
                    phone=demo.phone,
                    store=store_code,
                    assistant=demo.fields["assistant"],
                    amount=Decimal(p.amount),
                    at=at,
                    items=[
                        ItemIn(sku=sku, name=name, category=cat, qty=1, amount=Decimal(amount))
                        for sku, name, cat, amount in p.items
                    ],
                ),
            )
        if demo.stopped:
            await consent.stop(
                session,
                member=member,
                channel="staff",
                at=datetime.combine(today, time(10, 0), tzinfo=tz),
                source="demo: the member replied 不接受",
            )
    await session.flush()
