"""The generated sheets of `bench_purchases.py`: stores with two assistants each, a member
sheet, and a one-row-per-item purchase sheet in time order (1-4 items per receipt,
prices 59-2,999 yuan, 15 % of items bought twice, 2 % of receipts with a referrer)."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

TZ = timezone(timedelta(hours=8))
START = datetime(2025, 11, 1, tzinfo=TZ)
DAYS = 365
PRICES = [59, 99, 129, 199, 259, 299, 399, 499, 599, 899, 1299, 1899, 2999]
CATEGORIES = [
    ("SH", "衬衫", "衬衫"),
    ("TR", "西裤", "裤装"),
    ("CT", "大衣", "外套"),
    ("KN", "针织衫", "针织"),
    ("DR", "连衣裙", "裙装"),
    ("SC", "围巾", "配饰"),
    ("BL", "皮带", "配饰"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"


def phone_of(i: int) -> str:
    return f"139{i:08d}"


def stores(n: int) -> list[tuple[str, list[str]]]:
    """[(store code, [assistant codes])], two assistants per store."""
    return [(f"S{s:02d}", [f"A{s:02d}{a}" for a in (1, 2)]) for s in range(1, n + 1)]


def write_members(path: Path, *, members: int, shops, rnd: random.Random, first: int = 0) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["phone", "name", "gender", "birthday", "birthday_calendar", "store", "assistant"]
        )
        for i in range(first, first + members):
            store, assistants = shops[i % len(shops)]
            w.writerow(
                [
                    phone_of(i),
                    rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(("", *GIVEN)),
                    rnd.choice("MF"),
                    f"{rnd.randint(1960, 2004)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                    "lunar" if rnd.random() < 0.15 else "solar",
                    store,
                    rnd.choice(assistants),
                ]
            )


def _item_counts(receipts: int, rows: int, rnd: random.Random) -> list[int]:
    """1-4 items per receipt, summing to exactly `rows` (needs receipts <= rows <= 4*receipts)."""
    if not receipts <= rows <= 4 * receipts:
        raise SystemExit("--rows must be between --receipts and 4 x --receipts")
    counts = [rnd.randint(1, 4) for _ in range(receipts)]
    diff = rows - sum(counts)
    while diff:
        i = rnd.randrange(receipts)
        if diff > 0 and counts[i] < 4:
            counts[i] += 1
            diff -= 1
        elif diff < 0 and counts[i] > 1:
            counts[i] -= 1
            diff += 1
    return counts


def purchases(*, receipts: int, rows: int, members: int, shops, rnd: random.Random, prefix: str,
              start: datetime = START, days: int = DAYS):  # fmt: skip
    """Yield purchase dicts (API JSON shape), in time order, like a till's export."""
    times = sorted(
        start + timedelta(days=rnd.randrange(days), minutes=rnd.randrange(10 * 60, 22 * 60))
        for _ in range(receipts)
    )
    for n, (at, count) in enumerate(zip(times, _item_counts(receipts, rows, rnd), strict=True)):
        store, assistants = rnd.choice(shops)
        items = []
        for _ in range(count):
            code, name, category = rnd.choice(CATEGORIES)
            qty = 1 if rnd.random() < 0.85 else 2
            price = Decimal(rnd.choice(PRICES))
            items.append(
                {
                    "sku": f"{code}-{rnd.randint(1000, 1099)}",
                    "name": name,
                    "category": category,
                    "qty": qty,
                    "amount": str(price * qty),
                }
            )
        member = rnd.randrange(members)
        referrer = phone_of(rnd.randrange(members)) if rnd.random() < 0.02 else None
        yield {
            "receipt_no": f"{prefix}{n:07d}",
            "phone": phone_of(member),
            "store": store,
            "assistant": rnd.choice(assistants),
            "amount": str(sum(Decimal(i["amount"]) for i in items)),
            "at": at.isoformat(),
            "items": items,
            **({"referrer": referrer} if referrer else {}),
        }


def write_purchases(path: Path, data) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["receipt_no", "phone", "store", "assistant", "amount", "at", "sku", "name",
             "category", "qty", "item_amount", "referrer"]
        )  # fmt: skip
        for p in data:
            for item in p["items"]:
                w.writerow(
                    [p["receipt_no"], p["phone"], p["store"], p["assistant"], p["amount"], p["at"],
                     item["sku"], item["name"], item["category"], item["qty"], item["amount"],
                     p.get("referrer", "")]
                )  # fmt: skip
