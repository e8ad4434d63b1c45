"""Every table of the database as comparable rows: surrogate ids replaced by the natural
keys they stand for (a member's phone, a receipt number, a store's code, ...), creation
stamps left out — so two databases that recorded the same history by different paths
compare equal row for row (`tests/test_bulk_import.py`)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from sqlalchemy import select, text

from models.tables.schema import METADATA

SKIPPED_COLUMNS = {"id", "created_at"}
STAMPS = {("members", "updated_at"), ("assistants", "token_hash")}
"""Columns that record when a row was written, not what happened (the members' import
stamps them with the clock), and an assistant's random token."""
_IDS_IN_TEXT = re.compile(
    r"\b(return-referral|purchase|birthday|referral|expiry|return):(\d+)|\b(member|lot) (\d+)"
)


async def _natural_keys(conn) -> dict[str, dict[int, Any]]:
    async def pairs(sql: str) -> dict[int, Any]:
        return {r[0]: r[1] for r in (await conn.execute(text(sql))).all()}

    keys = {
        "members": await pairs("SELECT id, phone FROM members"),
        "stores": await pairs("SELECT id, code FROM stores"),
        "assistants": await pairs("SELECT id, code FROM assistants"),
        "purchases": await pairs("SELECT id, receipt_no FROM purchases"),
        "sale_returns": await pairs("SELECT id, return_no FROM sale_returns"),
    }
    apps = await conn.execute(text("SELECT id, member_id, tier, created_at FROM card_applications"))
    keys["card_applications"] = {
        r[0]: (keys["members"].get(r[1]), r[2], str(r[3])) for r in apps.all()
    }
    lots = await conn.execute(text("SELECT id, entry_id FROM points_lots"))
    keys["points_lots_raw"] = {r[0]: r[1] for r in lots.all()}
    ledger = await conn.execute(text("SELECT id, key FROM points_ledger"))
    keys["points_ledger_raw"] = {r[0]: r[1] for r in ledger.all()}
    keys["points_ledger"] = {i: _named(keys, k) for i, k in keys["points_ledger_raw"].items()}
    return keys


def _named(keys: dict[str, dict[int, Any]], value: str) -> str:
    """Ids inside a ledger key or note replaced by what they name."""

    def swap(m: re.Match) -> str:
        if m.group(1):
            kind, number = m.group(1), int(m.group(2))
            table = {
                "expiry": "points_lots_raw",
                "return": "sale_returns",
                "return-referral": "sale_returns",
            }.get(kind, "purchases")
            named = keys[table].get(number)
            if kind == "expiry":  # the lot's earning, by its own key
                named = _named(keys, keys["points_ledger_raw"].get(named, str(named)))
            return f"{kind}:{named}"
        kind, number = m.group(3), int(m.group(4))
        if kind == "member":
            return f"member {keys['members'].get(number)}"
        entry = keys["points_lots_raw"].get(number)  # a lot, by its earning's key
        return f"lot {_named(keys, keys['points_ledger_raw'].get(entry, str(entry)))}"

    return _IDS_IN_TEXT.sub(swap, value)


FOREIGN = {
    "member_id": "members",
    "referrer_id": "members",
    "store_id": "stores",
    "assistant_id": "assistants",
    "purchase_id": "purchases",
    "entry_id": "points_ledger",
    "application_id": "card_applications",
    "return_id": "sale_returns",
}


async def snapshot(engine) -> dict[str, Counter]:
    """Table name → the multiset of its rows, normalised (see the module docstring)."""
    out: dict[str, Counter] = {}
    async with engine.connect() as conn:
        keys = await _natural_keys(conn)
        for table in METADATA.sorted_tables:
            rows = Counter()
            for row in (await conn.execute(select(table))).all():
                values = []
                for column, value in zip(table.columns, row, strict=True):
                    name = column.name
                    if name in SKIPPED_COLUMNS or (table.name, name) in STAMPS:
                        continue
                    if name in FOREIGN and value is not None:
                        value = ("→", keys[FOREIGN[name]].get(value, value))
                    elif name in ("key", "note", "source") and isinstance(value, str):
                        value = _named(keys, value)
                    values.append((name, value))
                if table.name == "tier_changes" and dict(values)["reason"] == "returned":
                    values = [v for v in values if v[0] != "at"]  # stamped with the clock
                rows[tuple(values)] += 1
            out[table.name] = rows
    return out


async def wipe(engine) -> None:
    """Empty every table (children first)."""
    async with engine.begin() as conn:
        for table in reversed(METADATA.sorted_tables):
            await conn.execute(table.delete())
