"""How fast the daily planner plans, on an ordinary day and on a festival day.

    python bench/bench_planner.py --db sqlite --members 100000
    python bench/bench_planner.py --db postgres --members 100000,1000000
    python bench/bench_planner.py --db both --members 20000 --profile
    python bench/bench_planner.py --db both --members 1000000 --reuse --cases ordinary --phases

For each database and member count:

1. a fresh database (SQLite file in a temporary folder, or the PostgreSQL
   database of --pg-url, dropped and created again), migrated, then filled with
   synthetic data by bulk loads (PostgreSQL: asyncpg ``copy_records_to_table``;
   SQLite: ``executemany`` in one transaction) — timed;
2. each case in its own subprocess (so peak memory is the case's own):
   ``plan_day`` and ``save_plan`` in one transaction that is rolled back at the
   end, so every case sees the same data. Cases: ``ordinary`` (2026-11-24: the
   day's purchase follow-ups, birthdays, anniversaries, dormant members, points
   expiry, card steps) and ``festival`` (中秋 2026-09-25: a holiday greeting for
   every member, planned and saved a batch at a time with ``iter_plan``);
   ``ordinary-job`` and ``festival-job`` run the same days through
   ``scheduler.plan.planner.save_day``, what the daily job calls (batch k saved while
   batch k + 1 is composed). ``--repeat N`` runs each case N times; ``--phases``
   times the planner's reads, rendering and rules check (without overlapping the
   reads and the composing, so the parts add up).

Synthetic data (`--seed`): 50 stores × 10 assistants; birthdays uniform over the
year, 15 % lunar; 30 % with a wedding day; join dates over six years; 80 / 15 /
5 % points / gold / diamond; 5 % stopped; 10 % with a preferred contact time;
5 % English; purchases spread over the two years before 2026-11-24 (0-6 per
member, 1.6 on average) with 1-2 items, one ledger entry and one points lot each
(lots expire after 24 months); a WeChat identity for 40 % (2 % wrote in the last
three days), an SMS identity for everyone (1 % marked bad); and the outbox
history the planner reads: the follow-ups already sent for the last 130 days'
purchases.

Prints a table (seconds, CPU seconds of the planner process, messages/s, peak RSS)
and writes JSON to bench/results/.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/memberbot_bench_planner"
"""The member count is appended to the database name (…_planner_100000)."""
TZ = timezone(timedelta(hours=8))
ORDINARY = date(2026, 11, 24)
FESTIVAL = date(2026, 9, 25)
DATA_END = ORDINARY - timedelta(days=1)  # purchases up to the day before the ordinary day
HISTORY_DAYS = 730
OUTBOX_DAYS = 130
PRICES = [99, 129, 199, 259, 299, 399, 499, 599, 899, 1299, 1899, 2999]
ITEMS = [
    ("羊毛大衣", "wool"),
    ("真丝衬衫", "silk"),
    ("牛仔裤", "denim"),
    ("针织开衫", "knit"),
    ("羽绒服", "down"),
    ("皮鞋", "shoes"),
    ("棉质T恤", "cotton"),
    ("连衣裙", "dress"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]
WINDOWS = ["19:00-21:00", "12:00-14:00", "09:00-12:00", "18:00-20:30"]
PURCHASE_COUNTS = [0] * 30 + [1] * 25 + [2] * 20 + [3] * 12 + [4] * 8 + [6] * 5


# --------------------------------------------------------------------------- data


def _utc(d: date, hour: int, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def _add_months(d: date, months: int) -> date:
    from models.clock import add_months

    return add_months(d, months)


class Data:
    """Rows per table, as tuples in `COLUMNS` order (ids explicit, so no RETURNING)."""

    COLUMNS = {
        "stores": ("id", "code", "name", "city", "phone", "created_at"),
        "assistants": ("id", "code", "name", "store_id", "active", "created_at"),
        "members": (
            "id", "phone", "name", "gender", "birthday_year", "birthday_month", "birthday_day",
            "birthday_calendar", "birthday_leap_month", "wedding_year", "wedding_month",
            "wedding_day", "join_date", "preferred_contact", "store_id", "assistant_id",
            "locale", "points", "cumulative_spend", "visits", "purchases_count",
            "first_purchase_at", "last_purchase_at", "tier", "stopped", "created_at",
            "updated_at",
        ),
        "purchases": (
            "id", "receipt_no", "member_id", "store_id", "assistant_id", "amount", "at",
            "local_date", "points", "created_at",
        ),
        "purchase_items": (
            "id", "purchase_id", "sku", "name", "category", "brand", "qty", "amount",
        ),
        "points_ledger": (
            "id", "member_id", "delta", "reason", "at", "local_date", "key", "balance_after",
            "purchase_id", "note",
        ),
        "points_lots": (
            "id", "member_id", "entry_id", "earned_on", "expires_on", "points", "remaining",
        ),
        "identities": (
            "id", "member_id", "channel", "address", "active", "bad", "last_inbound_at",
            "created_at",
        ),
        "outbox": (
            "id", "member_id", "kind", "occasion", "planned_on", "store_id", "assistant_id",
            "locale", "text", "channel", "via", "address", "status", "send_after", "attempts",
            "created_at", "updated_at",
        ),
    }  # fmt: skip

    def __init__(self, members: int, seed: int):
        rnd = random.Random(seed)
        now = _utc(DATA_END, 22)
        self.rows: dict[str, list[tuple]] = {t: [] for t in self.COLUMNS}
        r = self.rows
        for s in range(1, 51):
            r["stores"].append((s, f"S{s:03d}", f"第{s}分店", "上海", "", now))
            for a in range(10):
                aid = (s - 1) * 10 + a + 1
                r["assistants"].append(
                    (aid, f"A{aid:04d}", rnd.choice(SURNAMES) + rnd.choice(GIVEN), s, True, now)
                )
        first_day = DATA_END - timedelta(days=HISTORY_DAYS - 1)
        join_start = date(2020, 11, 24)
        join_span = (DATA_END - join_start).days
        leap_year = date(2024, 1, 1)
        pid = lid = iid = oid = 0
        care = {"points": 10, "gold": 7, "diamond": 7}
        for mid in range(1, members + 1):
            store = rnd.randint(1, 50)
            assistant = (store - 1) * 10 + rnd.randint(1, 10)
            if rnd.random() < 0.15:
                cal, bm, bd = "lunar", rnd.randint(1, 12), rnd.randint(1, 30)
            else:
                b = leap_year + timedelta(days=rnd.randrange(366))
                cal, bm, bd = "solar", b.month, b.day
            if rnd.random() < 0.30:
                w = leap_year + timedelta(days=rnd.randrange(366))
                wy, wm, wd = rnd.randint(1985, 2025), w.month, w.day
                if (wm, wd) == (2, 29):
                    wy = 2024
            else:
                wy = wm = wd = None
            joined = join_start + timedelta(days=rnd.randrange(join_span))
            tier = rnd.choices(("points", "gold", "diamond"), (80, 15, 5))[0]
            n = rnd.choice(PURCHASE_COUNTS)
            days = sorted(first_day + timedelta(days=rnd.randrange(HISTORY_DAYS)) for _ in range(n))
            points = spend = 0
            first_at = last_at = None
            for d in days:
                pid += 1
                price = rnd.choice(PRICES)
                at = _utc(d, rnd.randint(10, 20), rnd.randint(0, 59))
                first_at = first_at or at
                last_at = at
                points += price
                spend += price
                r["purchases"].append(
                    (pid, f"R{pid:09d}", mid, store, assistant, price * 100, at, d, price, at)
                )
                for _ in range(1 if rnd.random() < 0.7 else 2):
                    iid += 1
                    name, category = rnd.choice(ITEMS)
                    r["purchase_items"].append(
                        (iid, pid, f"SKU{iid % 997}", name, category, "", 1, price * 100)
                    )
                lid += 1
                r["points_ledger"].append(
                    (lid, mid, price, "purchase", at, d, f"purchase:{pid}", points, pid, "")
                )
                r["points_lots"].append((lid, mid, lid, d, _add_months(d, 24), price, price))
                # the outbox history: follow-ups already sent for recent purchases
                if (ORDINARY - d).days <= OUTBOX_DAYS:
                    for kind, n_day in (
                        ("points_notice", 2),
                        ("care_d3", 3),
                        ("care_d7" if care[tier] == 7 else "care_d10", care[tier]),
                        ("care_d30", 30),
                    ):
                        sent = d + timedelta(days=n_day - 1)
                        if sent >= ORDINARY:
                            continue
                        oid += 1
                        at9 = _utc(sent, 9)
                        r["outbox"].append(
                            (
                                oid, mid, kind, f"purchase:{pid}", sent, store, assistant,
                                "zh_CN", "…", "sms", "console", f"+86138{mid:08d}",
                                "delivered", at9, 1, at9, at9,
                            )
                        )  # fmt: skip
            phone = f"+86138{mid:08d}"
            r["members"].append(
                (
                    mid, phone, rnd.choice(SURNAMES) + rnd.choice(GIVEN), rnd.choice("MF"),
                    rnd.randint(1960, 2005), bm, bd, cal, cal == "lunar" and rnd.random() < 0.03,
                    wy, wm, wd, joined,
                    rnd.choice(WINDOWS) if rnd.random() < 0.10 else None,
                    store, assistant, "en" if rnd.random() < 0.05 else None,
                    points, spend * 100, 0, n, first_at, last_at, tier, rnd.random() < 0.05,
                    now, now,
                )
            )  # fmt: skip
            r["identities"].append(
                (2 * mid - 1, mid, "sms", phone, True, rnd.random() < 0.01, None, now)
            )
            if rnd.random() < 0.40:
                inbound = None
                if rnd.random() < 0.05:
                    inbound = _utc(ORDINARY - timedelta(days=rnd.randint(0, 3)), rnd.randint(8, 22))
                r["identities"].append(
                    (2 * mid, mid, "wechat", f"o{mid:012x}", True, False, inbound, now)
                )

    def counts(self) -> dict[str, int]:
        return {t: len(rows) for t, rows in self.rows.items()}


# --------------------------------------------------------------------------- loading


def _sqlite_value(v):
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, date):
        return v.isoformat()
    return v


def load_sqlite(path: Path, data: Data) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")
    with conn:
        for table, rows in data.rows.items():
            cols = Data.COLUMNS[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            conn.executemany(sql, ([_sqlite_value(v) for v in row] for row in rows))
    conn.execute("ANALYZE")
    conn.close()


async def load_postgres(url: str, data: Data) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for table, rows in data.rows.items():
            await conn.copy_records_to_table(table, records=rows, columns=Data.COLUMNS[table])
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def fresh_database(url: str) -> None:
    from models.db import make_engine, migrate

    if url.startswith("postgresql"):
        import asyncpg

        base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
        conn = await asyncpg.connect(base + "/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()


def database_url(db: str, members: int, workdir: Path, pg_url: str) -> str:
    if db == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / f'planner-{members}.db'}"
    base, _, name = pg_url.rpartition("/")
    return f"{base}/{name}_{members}"


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return

    async def drop() -> None:
        import asyncpg

        base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
        conn = await asyncpg.connect(base + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await conn.close()

    asyncio.run(drop())


def build(dbs: list[str], members: int, seed: int, workdir: Path, pg_url: str) -> dict:
    """Generate the data once, then create, migrate and fill each database.

    {db: (url, {"generate_s", "load_s", "rows"})}."""
    t0 = time.perf_counter()
    data = Data(members, seed)
    t_gen = time.perf_counter() - t0
    counts = data.counts()
    out = {}
    for db in dbs:
        url = database_url(db, members, workdir, pg_url)
        drop_database(url)
        asyncio.run(fresh_database(url))
        t1 = time.perf_counter()
        if db == "sqlite":
            load_sqlite(Path(url.split(":///", 1)[1]), data)
        else:
            asyncio.run(load_postgres(url, data))
        out[db] = (url, {"generate_s": t_gen, "load_s": time.perf_counter() - t1, "rows": counts})
    del data
    return out


# --------------------------------------------------------------------------- one case


def _cache_normalize() -> None:
    """What-if (--normalize-cache): memoise `models.settings.lexicon.normalize`, the change
    proposed for the rules checker (it normalises each text twice and the same
    store/assistant names and stop hints for every message)."""
    from functools import lru_cache

    from models.settings import lexicon as words
    from scheduler import lexicon, message_rules

    cached = lru_cache(maxsize=4096)(words.normalize)
    words.normalize = cached
    lexicon.normalize = cached
    message_rules.normalize = cached


class _Phases:
    """Wall time spent in the planner's parts (--phases): its database reads, rendering,
    the rules check; saving is timed by the case itself. Installed by wrapping the
    functions the planner calls, so the planner's code is not changed for it. The reads
    of the next batch are kept from overlapping the composing, so the parts add up."""

    def __init__(self) -> None:
        self.seconds = {"reads": 0.0, "render": 0.0, "check": 0.0}
        self.calls = {"reads": 0, "render": 0, "check": 0}

    def _timed_async(self, phase: str, fn):
        async def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t
                self.calls[phase] += 1

        return wrapper

    def _timed(self, phase: str, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t
                self.calls[phase] += 1

        return wrapper

    def install(self) -> None:
        from scheduler import message_rules
        from scheduler.plan import (
            card_steps,
            care_calendar,
            occasion_due,
            plan_compose,
            plan_reads,
            planner,
        )

        reads = self._timed_async("reads", plan_reads.rows)
        for module in (plan_reads, care_calendar, occasion_due):
            module.rows = reads
        card_steps.card_steps = self._timed_async("reads", card_steps.card_steps)
        plan_compose.render_text = self._timed("render", plan_compose.render_text)
        message_rules.check = self._timed("check", message_rules.check)
        # Compose without letting the reads of the next batch run meanwhile, so that the
        # parts add up (the run is that much slower than without --phases).
        planner._YIELD_EVERY = 1 << 30


MODES = {
    "list": "plan_day + save_plan",
    "stream": "iter_plan + save per batch",
    "job": "save_day (the daily job: batch k saved while k+1 is composed)",
}


async def _run_case(
    url: str, day: date, mode: str, profile: str | None, phases: _Phases | None = None
) -> dict:
    from models.db import make_engine, session_factory
    from models.settings.load import load_settings
    from scheduler.plan.plan_save import save_plan
    from scheduler.plan.planner import iter_plan, plan_day, save_day

    settings = load_settings(None, environ={}, overrides={"database": {"url": url}})
    engine = make_engine(url)
    sessions = session_factory(engine)
    base_rss = _peak_rss_mb()
    now = _utc(day, 8)
    plan_s = save_s = 0.0
    planned = queued = suppressed = inserted = 0
    reasons: dict[str, int] = {}
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    async with sessions() as session:
        await session.begin()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if mode == "job":
            result = await save_day(session, settings=settings, day=day, now=now)
            plan_s = time.perf_counter() - t0
            inserted = result.inserted
            planned = result.inserted + result.already
            queued = result.queued
            reasons = {"suppressed (of the inserted)": result.suppressed}
        elif mode == "stream":
            t = time.perf_counter()
            async for batch in iter_plan(session, settings=settings, day=day):
                plan_s += time.perf_counter() - t
                t = time.perf_counter()
                result = await save_plan(session, planned=batch, now=now)
                save_s += time.perf_counter() - t
                inserted += result.inserted
                planned += len(batch)
                for p in batch:
                    queued += p.status == "queued"
                    if p.reason:
                        reasons[p.reason] = reasons.get(p.reason, 0) + 1
                t = time.perf_counter()
        else:
            batch = await plan_day(session, settings=settings, day=day)
            plan_s = time.perf_counter() - t0
            t = time.perf_counter()
            result = await save_plan(session, planned=batch, now=now)
            save_s = time.perf_counter() - t
            inserted = result.inserted
            planned = len(batch)
            for p in batch:
                queued += p.status == "queued"
                if p.reason:
                    reasons[p.reason] = reasons.get(p.reason, 0) + 1
            del batch
        total = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await session.rollback()
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    await engine.dispose()
    suppressed = planned - queued if mode != "job" else result.suppressed
    peak = _peak_rss_mb()
    breakdown = {}
    if phases is not None:
        breakdown = {f"{k}_s": v for k, v in phases.seconds.items()}
        breakdown["save_s"] = save_s
        breakdown["other_s"] = plan_s - sum(phases.seconds.values())
    return {
        "day": day.isoformat(),
        "mode": MODES[mode],
        "phases": breakdown,
        "plan_s": plan_s,
        "save_s": save_s,
        "total_s": total,
        "cpu_s": cpu,
        "messages": planned,
        "queued": queued,
        "suppressed": suppressed,
        "reasons": reasons,
        "inserted": inserted,
        "messages_per_s": planned / total if total else 0.0,
        "peak_rss_mb": peak,
        "rss_before_mb": base_rss,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's
    pages from before the exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(
    url: str, day: date, mode: str, profile: str | None, cache: bool, phases: bool
) -> dict:
    cmd = [
        sys.executable, __file__, "--run-case", "--url", url, "--day", day.isoformat(),
    ]  # fmt: skip
    if cache:
        cmd.append("--normalize-cache")
    if phases:
        cmd.append("--phases")
    cmd += ["--mode", mode]
    if profile:
        cmd += ["--profile-out", profile]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_profile(path: str, limit: int = 25) -> None:
    import pstats

    stats = pstats.Stats(path, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(limit)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite", choices=("sqlite", "postgres", "both"))
    ap.add_argument("--members", default="100000", help="comma-separated member counts")
    ap.add_argument(
        "--cases",
        default="ordinary,festival",
        help="of ordinary, ordinary-job, festival, festival-job (the -job cases run save_day)",
    )
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", default=None, help="SQLite files (default: $TMPDIR/memberbot-…)")
    ap.add_argument("--list-festival", action="store_true", help="festival with plan_day too")
    ap.add_argument("--profile", action="store_true", help="cProfile each case (stderr, .prof)")
    ap.add_argument("--keep", action="store_true", help="keep the databases (see --reuse)")
    ap.add_argument("--reuse", action="store_true", help="use databases kept by --keep")
    ap.add_argument(
        "--normalize-cache",
        action="store_true",
        help="what-if: memoise models.settings.lexicon.normalize (a proposed change)",
    )
    ap.add_argument(
        "--phases",
        action="store_true",
        help="time the planner's reads, rendering and rules check (no overlap of reads and "
        "composing while timing)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="run each case this many times")
    # internal: one case in a subprocess
    ap.add_argument("--run-case", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--day", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="list", choices=tuple(MODES), help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.run_case:
        if args.normalize_cache:
            _cache_normalize()
        phases = None
        if args.phases:
            phases = _Phases()
            phases.install()
        result = asyncio.run(
            _run_case(args.url, date.fromisoformat(args.day), args.mode, args.profile_out, phases)
        )
        print(json.dumps(result))
        return

    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    sizes = [int(s) for s in args.members.split(",")]
    cases = args.cases.split(",")
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "memberbot-bench-planner")
    workdir.mkdir(parents=True, exist_ok=True)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "normalize_cache": args.normalize_cache,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "runs": [],
    }
    rows = []
    for n in sizes:
        if args.reuse:
            built_all = {
                db: (database_url(db, n, workdir, args.pg_url), {"reused": True}) for db in dbs
            }
        else:
            print(
                f"[{n:,}] generating and loading into {', '.join(dbs)} …",
                file=sys.stderr,
                flush=True,
            )
            built_all = build(dbs, n, args.seed, workdir, args.pg_url)
        for db in dbs:
            url, built = built_all[db]
            if not args.reuse:
                print(
                    f"[{db} {n:,}] generated in {built['generate_s']:.1f} s, loaded in "
                    f"{built['load_s']:.1f} s: {sum(built['rows'].values()):,} rows",
                    file=sys.stderr,
                    flush=True,
                )
            run = {"db": db, "members": n, **built, "cases": []}
            todo = []
            if "ordinary" in cases:
                todo.append(("ordinary", ORDINARY, "list"))
            if "ordinary-job" in cases:
                todo.append(("ordinary-job", ORDINARY, "job"))
            if "festival" in cases:
                todo.append(("festival", FESTIVAL, "stream"))
                if args.list_festival:
                    todo.append(("festival (list)", FESTIVAL, "list"))
            if "festival-job" in cases:
                todo.append(("festival-job", FESTIVAL, "job"))
            for name, day, mode in todo:
                for _ in range(args.repeat):
                    prof = None
                    if args.profile:
                        prof = str(results_dir / f"planner-{db}-{n}-{name.split()[0]}.prof")
                    case = run_case(url, day, mode, prof, args.normalize_cache, args.phases)
                    case["case"] = name
                    run["cases"].append(case)
                    rows.append((db, n, name, case))
                    print(
                        f"[{db} {n:,}] {name}: {case['messages']:,} messages in "
                        f"{case['total_s']:.2f} s (plan {case['plan_s']:.2f} + save "
                        f"{case['save_s']:.2f}), cpu {case['cpu_s']:.2f} s, peak RSS "
                        f"{case['peak_rss_mb']:.0f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
                    if case["phases"]:
                        print(
                            "    " + ", ".join(f"{k} {v:.2f}" for k, v in case["phases"].items()),
                            file=sys.stderr,
                            flush=True,
                        )
                    if prof:
                        print_profile(prof)
            report["runs"].append(run)
            if not (args.keep or args.reuse):
                drop_database(url)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results_dir / f"planner-{'-'.join(dbs)}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    header = (
        f"{'db':9} {'members':>9} {'case':16} {'messages':>9} {'queued':>8} {'plan s':>7} "
        f"{'save s':>7} {'total s':>8} {'cpu s':>7} {'msg/s':>8} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for db, n, name, c in rows:
        print(
            f"{db:9} {n:>9,} {name:16} {c['messages']:>9,} {c['queued']:>8,} "
            f"{c['plan_s']:>7.2f} {c['save_s']:>7.2f} {c['total_s']:>8.2f} {c['cpu_s']:>7.2f} "
            f"{c['messages_per_s']:>8,.0f} {c['peak_rss_mb']:>8.0f}"
        )
    print(f"\nresults: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
