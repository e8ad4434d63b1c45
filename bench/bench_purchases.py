"""How many purchases per second memberbot records, by CSV import and by the HTTP API.

    python bench/bench_purchases.py --db sqlite
    python bench/bench_purchases.py --db postgres [--pg-url postgresql+asyncpg://…/memberbot_bench]
    python bench/bench_purchases.py --db sqlite --rows 5000 --receipts 2000 --members 500 --api 300

Steps, on a fresh database (SQLite file in a temporary folder, or the PostgreSQL
database named in --pg-url, dropped and created again):

1. stores and assistants through the domain functions; `memberbot import members`
   of a generated member sheet (timed);
2. `memberbot import purchases` of a generated one-row-per-item sheet (timed), then
   the same file again (timed: every receipt "already recorded");
3. `memberbot serve` as a subprocess on 127.0.0.1 with a free port, and `--api`
   purchases posted to `POST /api/purchases` by an aiohttp client with
   `--concurrency` requests in flight (timed).

Prints a table and writes JSON to bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.purchase_data import (  # noqa: E402  (after the path to this checkout)
    DAYS,
    START,
    purchases,
    stores,
    write_members,
    write_purchases,
)

API_KEY = "bench-api-key-0123456789"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/memberbot_bench"


@dataclass
class Step:
    name: str
    wall_s: float
    rows: int = 0
    records: int = 0
    extra: dict = field(default_factory=dict)
    cpu_s: float = 0.0
    """CPU seconds of the memberbot process (independent of other load on the machine)."""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s else 0.0


# --------------------------------------------------------------------------- database


def _pg_parts(url: str) -> tuple[str, str]:
    base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    return base, name


async def pg_recreate(url: str, *, drop_only: bool = False) -> None:
    import asyncpg

    base, name = _pg_parts(url)
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def seed_shops(url: str, shops) -> None:
    from models.db import make_engine, migrate, session_factory, transaction
    from models.stores import create_or_update_assistant, upsert_store

    engine = make_engine(url)
    try:
        await migrate(engine)
        async with transaction(session_factory(engine)) as session:
            for code, assistants in shops:
                await upsert_store(session, code=code, name=f"门店{code}", city="上海")
                for a in assistants:
                    await create_or_update_assistant(
                        session, code=a, name=f"导购{a}", store_code=code
                    )
    finally:
        await engine.dispose()


async def db_counts(url: str) -> dict:
    from sqlalchemy import text

    from models.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            out = {}
            for table in ("members", "purchases", "purchase_items", "points_ledger"):
                out[table] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            out["points_total"] = (
                await conn.execute(text("SELECT coalesce(sum(points), 0) FROM members"))
            ).scalar()
            return out
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- runs


def _env() -> dict:
    """Run the memberbot of this checkout, whatever is installed."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memberbot(config: Path, *args: str, profile: Path | None = None) -> tuple[float, float, str]:
    """Run the CLI; (wall seconds, its CPU seconds, stdout)."""
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "bot.cli", "--config", str(config), *args]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=config.parent, env=_env(), capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"memberbot {' '.join(args)} failed:\n{proc.stderr}")
    return wall, cpu, proc.stdout


def _summary_numbers(stdout: str) -> dict:
    first = stdout.splitlines()[0] if stdout else ""
    return {
        k: int(v)
        for v, k in re.findall(
            r"(\d+) (created|updated|unchanged|recorded|already|rejected)", first
        )
    } | {"summary": first}  # noqa: E501


async def post_purchases(base_url: str, data: list[dict], concurrency: int) -> tuple[float, dict]:
    import aiohttp

    statuses: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for p in data:
        queue.put_nowait(p)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    latencies: list[float] = []

    async def worker(client):
        while not queue.empty():
            p = queue.get_nowait()
            t0 = time.perf_counter()
            async with client.post(f"{base_url}/api/purchases", json=p, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return wall, {"statuses": statuses, **_percentiles(latencies)}


def _percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    latencies = sorted(latencies)
    at = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q / 100))]  # noqa: E731
    return {f"p{q}_ms": round(at(q) * 1000, 1) for q in (50, 90, 99)}


def start_server(config: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "serve", "--port", "0"],
        cwd=config.parent,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=open(config.parent / "serve.log", "w"),  # noqa: SIM115
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"listening on (http://\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"memberbot serve did not start: {line!r}; see {config.parent}/serve.log")
    return proc, m.group(1)


def run_engine(args, url: str, work: Path) -> list[Step]:
    rnd = random.Random(args.seed)
    shops = stores(args.stores)
    config = work / "bench.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[api]\nkeys = ["{API_KEY}"]\n\n'
        "[scheduler]\nenabled = false\n"
    )
    asyncio.run(seed_shops(url, shops))
    steps: list[Step] = []

    empty = work / "empty.csv"
    empty.write_text("phone\n", encoding="utf-8")
    wall, cpu, _out = memberbot(config, "import", "members", str(empty))
    steps.append(Step("start-up (empty sheet)", wall, 0, 0, {}, cpu))
    for k in range(args.rounds):
        steps += import_round(args, config, work, shops, rnd, k, url)

    if "api" in args.mode and args.api:
        data = list(
            purchases(
                receipts=args.api, rows=min(args.api * 4, round(args.api * 2.5)),
                members=args.members, shops=shops, rnd=rnd, prefix="API",
                start=START + timedelta(days=DAYS), days=30,
            )
        )  # fmt: skip
        cpu0 = _children_cpu()
        proc, base_url = start_server(config)
        try:
            wall, extra = asyncio.run(post_purchases(base_url, data, args.concurrency))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        rows = sum(len(p["items"]) for p in data)
        cpu = _children_cpu() - cpu0  # the server's, start-up included
        steps.append(Step(f"API x{args.concurrency}", wall, rows, len(data), extra, cpu))

    counts = asyncio.run(db_counts(url))
    steps.append(Step("database after", 0, extra=counts))
    return steps


def import_round(args, config: Path, work: Path, shops, rnd, k: int, url: str) -> list[Step]:
    """Round `k`: `--members` new members, then `--receipts` new receipts of all members so
    far, a year after the previous round's (the tables grow round by round)."""
    steps = []
    before = asyncio.run(db_counts(url)) if args.rounds > 1 else {}
    sizes = {f"{t}_before": before[t] for t in ("members", "purchases", "points_ledger") if before}
    label = f" #{k + 1}" if args.rounds > 1 else ""
    path_flag = ["--one-by-one"] if args.one_by_one else []
    members_csv = work / f"members{k}.csv"
    write_members(members_csv, members=args.members, shops=shops, rnd=rnd, first=k * args.members)
    profile = RESULTS / f"import-members-{args.db}.prof" if args.profile else None
    wall, cpu, out = memberbot(
        config, "import", "members", str(members_csv), "--batch-size", str(args.batch_size),
        *path_flag, profile=profile,
    )  # fmt: skip
    extra = _summary_numbers(out) | sizes
    steps.append(Step("import members" + label, wall, args.members, args.members, extra, cpu))
    if "import" not in args.mode:
        return steps
    purchases_csv = work / f"purchases{k}.csv"
    data = purchases(
        receipts=args.receipts, rows=args.rows, members=(k + 1) * args.members, shops=shops,
        rnd=rnd, prefix=f"B{k}-" if k else "B", start=START + timedelta(days=k * DAYS),
    )  # fmt: skip
    write_purchases(purchases_csv, data)
    if args.rounds > 1:
        before = asyncio.run(db_counts(url))
        sizes = {f"{t}_before": before[t] for t in ("members", "purchases", "points_ledger")}
    profile = RESULTS / f"import-{args.db}.prof" if args.profile else None
    wall, cpu, out = memberbot(
        config, "import", "purchases", str(purchases_csv), "--batch-size",
        str(args.batch_size), *path_flag, profile=profile,
    )  # fmt: skip
    extra = _summary_numbers(out) | sizes
    steps.append(Step("import purchases" + label, wall, args.rows, args.receipts, extra, cpu))
    if profile:
        _print_profile(profile)
    if k == args.rounds - 1:
        wall, cpu, out = memberbot(config, "import", "purchases", str(purchases_csv), *path_flag)
        extra = _summary_numbers(out)
        steps.append(Step("re-import (all already)", wall, args.rows, args.receipts, extra, cpu))
    return steps


def _print_profile(path: Path) -> None:
    import pstats

    print(f"\nprofile of the purchase import ({path}):", file=sys.stderr)
    pstats.Stats(str(path), stream=sys.stderr).sort_stats("cumulative").print_stats(30)


RESULTS = ROOT / "bench" / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT, help="database to create and drop")
    p.add_argument("--rows", type=int, default=100_000, help="item rows in the purchase CSV")
    p.add_argument("--receipts", type=int, default=40_000, help="receipts in the purchase CSV")
    p.add_argument("--members", type=int, default=5_000)
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--api", type=int, default=5_000, help="purchases posted to the API")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=500, help="records per import transaction")
    p.add_argument(
        "--mode", default="import,api", help="import, api or both (comma-separated); "
        "anything else: the member import only",
    )  # fmt: skip
    p.add_argument(
        "--rounds", type=int, default=1, help="import rounds (members + receipts each), the "
        "tables growing round by round",
    )  # fmt: skip
    p.add_argument(
        "--one-by-one", action="store_true", help="import with --one-by-one (the domain "
        "calls per record, as the API) instead of the bulk path",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--profile", action="store_true", help="cProfile the purchase import")
    p.add_argument("--keep", action="store_true", help="keep the database and files")
    args = p.parse_args()
    args.mode = set(args.mode.split(","))
    RESULTS.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix=f"memberbot-bench-{args.db}-"))
    if args.db == "sqlite":
        url = f"sqlite+aiosqlite:///{work}/bench.db"
    else:
        url = args.pg_url
        asyncio.run(pg_recreate(url))
    try:
        steps = run_engine(args, url, work)
        report(args, url, steps, work)
    finally:
        if args.db == "postgres" and not args.keep:
            asyncio.run(pg_recreate(url, drop_only=True))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def report(args, url: str, steps: list[Step], work: Path) -> None:
    print(f"\nmemberbot bench - {args.db} - {platform.python_version()} - {os.cpu_count()} CPUs")
    print(
        f"{'step':<26}{'wall s':>9}{'cpu s':>8}{'rows':>9}{'rows/s':>10}"
        f"{'records':>9}{'records/s':>11}{'ms cpu/rec':>12}"
    )
    for s in steps:
        if s.wall_s:
            per = f"{1000 * s.cpu_s / s.records:.1f}" if s.cpu_s and s.records else "-"
            print(
                f"{s.name:<26}{s.wall_s:>9.1f}{s.cpu_s:>8.1f}{s.rows:>9}{s.rows_per_s:>10.0f}"
                f"{s.records:>9}{s.records_per_s:>11.0f}{per:>12}"
            )
    for s in steps:
        if s.extra:
            print(f"  {s.name}: {json.dumps(s.extra, ensure_ascii=False)}")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"purchases-{args.db}-{stamp}.json"
    payload = {
        "db": args.db,
        "url": re.sub(r"://([^:@/]+):[^@/]+@", r"://\1:***@", url),
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "steps": [
            asdict(s)
            | {"rows_per_s": round(s.rows_per_s, 1), "records_per_s": round(s.records_per_s, 1)}
            for s in steps
        ],  # fmt: skip
    }
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    print(f"\nwrote {out}" + (f"; files kept in {work}" if args.keep else ""))


if __name__ == "__main__":
    sys.exit(main())
