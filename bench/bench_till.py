"""Voucher uses and returns per second through the API (issue 13), on SQLite or PostgreSQL.

Setup (not timed, in this process through the domain calls): one store, `--members`
members, each with one recorded sale of two items (so a return has something to take
back) and one voucher redeemed from the sale's points plus a seed adjustment. Then
`memberbot serve` runs as a subprocess on 127.0.0.1 with a free port and one aiohttp
client with `--concurrency` requests in flight posts:

1. `POST /api/vouchers/{code}/use` once per voucher (all distinct: the throughput of
   the conditional UPDATE + event row + answer);
2. `POST /api/returns` once per sale (one item back: lock, checks, `return` entry,
   spend, tier re-evaluation);
3. the same uses again (every answer 409 "used": the refusal path).

    python bench/bench_till.py --db sqlite
    python bench/bench_till.py --db postgres      # creates and drops memberbot_bench_till

Output: a table of wall seconds, requests/s and latency percentiles per step, and the
status counts; a final check that ledger = balance = open lots for every member.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_purchases import API_KEY, ROOT, _percentiles, pg_recreate, start_server  # noqa: E402

sys.path.insert(0, str(ROOT))
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/memberbot_bench_till"


async def setup(url: str, members: int) -> tuple[list[str], list[str]]:
    """(voucher codes, receipt numbers), one each per member."""
    from sqlmodel import select

    from models.db import make_engine, migrate, session_factory, transaction
    from models.points import post_points
    from models.purchases.input import PurchaseIn
    from models.purchases.record import record_purchase
    from models.rules import LoyaltyRules
    from models.stores import upsert_store
    from models.tables.members import Member
    from models.vouchers import redeem

    rules, tz = LoyaltyRules(), ZoneInfo("Asia/Shanghai")
    engine = make_engine(url)
    await migrate(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC) - timedelta(hours=1)
    codes, receipts = [], []
    async with transaction(sessions) as s:
        await upsert_store(s, code="S1", name="门店S1", city="上海")
    for start in range(0, members, 200):
        async with transaction(sessions) as s:
            for i in range(start, min(start + 200, members)):
                phone, receipt = f"+8613{i:09d}", f"B{i}"
                items = [
                    {"sku": "K1", "name": "衬衫", "category": "shirts", "qty": 2, "amount": "800"},
                    {"sku": "K2", "name": "大衣", "category": "coats", "qty": 1, "amount": "1200"},
                ]
                data = PurchaseIn(receipt_no=receipt, phone=phone, store="S1",
                                  amount=Decimal(2000), at=now, items=items)  # fmt: skip
                await record_purchase(s, rules=rules, tz=tz, data=data)
                m = (await s.exec(select(Member).where(Member.phone == phone))).one()
                await post_points(s, rules=rules.points, member_id=m.id, delta=1000,
                                  reason="adjustment", key=f"seed:{i}", at=now,
                                  local_date=now.astimezone(tz).date())  # fmt: skip
                v, _ = await redeem(s, rules=rules, tz=tz, member_id=m.id, reward_code="v300",
                                    key=f"b{i}", now=now)  # fmt: skip
                codes.append(v.code)
                receipts.append(receipt)
    await engine.dispose()
    return codes, receipts


async def check(url: str) -> int:
    """Members whose ledger, balance and open lots disagree (0 expected)."""
    from sqlmodel import select

    from models.db import make_engine, session_factory, transaction
    from models.points_reads import balance_check
    from models.tables.members import Member

    engine = make_engine(url)
    bad = 0
    async with transaction(session_factory(engine)) as s:
        for member_id in (await s.exec(select(Member.id))).all():
            points, ledger, lots = await balance_check(s, member_id=member_id)
            bad += not (points == ledger == lots)
    await engine.dispose()
    return bad


async def post_all(base_url: str, requests: list[tuple[str, dict]], concurrency: int):
    import aiohttp

    statuses: dict[int, int] = {}
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def worker(client):
        while not queue.empty():
            path, body = queue.get_nowait()
            t0 = time.perf_counter()
            async with client.post(f"{base_url}{path}", json=body, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return wall, statuses, _percentiles(latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-till-") as tmp:
        work = Path(tmp)
        if args.db == "postgres":
            url = args.pg_url
            asyncio.run(pg_recreate(url))
        else:
            url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        config = work / "bench.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n\n[api]\nkeys = ["{API_KEY}"]\n\n'
            "[scheduler]\nenabled = false\n"
        )
        t0 = time.perf_counter()
        codes, receipts = asyncio.run(setup(url, args.members))
        print(
            f"setup: {args.members} members, sales and vouchers in {time.perf_counter() - t0:.1f} s"
        )
        at = datetime.now(UTC).isoformat()
        uses = [(f"/api/vouchers/{c}/use", {"store": "S1"}) for c in codes]
        returns = [
            ("/api/returns", {"return_no": f"T{r}", "receipt_no": r, "at": at,
                              "items": [{"sku": "K1", "qty": 1, "amount": "400"}]})
            for r in receipts
        ]  # fmt: skip
        proc, base_url = start_server(config)
        rows = []
        try:
            for name, reqs in (
                ("voucher use", uses),
                ("return", returns),
                ("use again (409)", uses),
            ):
                wall, statuses, pct = asyncio.run(post_all(base_url, reqs, args.concurrency))
                rows.append((name, len(reqs), wall, statuses, pct))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        print(f"\n{args.db}, {args.members} members, concurrency {args.concurrency}")
        print(f"{'step':18} {'requests':>8} {'wall s':>7} {'req/s':>7}  latency ms, statuses")
        for name, n, wall, statuses, pct in rows:
            print(f"{name:18} {n:8} {wall:7.2f} {n / wall:7.0f}  {pct} {statuses}")
        bad = asyncio.run(check(url))
        print(f"members whose ledger, balance and lots disagree: {bad}")
        if args.db == "postgres":
            asyncio.run(pg_recreate(url, drop_only=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
