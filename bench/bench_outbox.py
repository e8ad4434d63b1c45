"""Benchmark of the outbox sender: messages/s from one process, and the rate limit's accuracy.

    python bench/bench_outbox.py                          # SQLite + PostgreSQL
    python bench/bench_outbox.py --engines sqlite --messages 2000 --rate-messages 200

For each engine, on a fresh database:

1. **Throughput** — `--messages` due SMS (default 5,000, one member each) are drained by
   one `scheduler.send.sender.Sender` with the rate limit off, through the real
   `TwilioSmsSender` (twilio's async client) to a local fake Twilio
   (`tests.fakes.FakeTwilioApi`) running in its own process. Every message goes the
   whole way: claim (FOR UPDATE SKIP LOCKED on PostgreSQL), send-time re-checks,
   the HTTP call, and the record (status, provider id, SMS receipt, event).
   `outbox.concurrency` = `--concurrency` (default 64), `batch_size` = `--batch-size`
   (default 500). Reported: wall seconds, messages/s, the CPU ms per message of the
   sender process and of the fake provider's process (on a 2-core machine the two
   share the cores, so the wall rate is bounded by their sum), and a check that the
   fake received each message once and every row ended `sent`.
   The same again with an in-process provider that accepts at once (no HTTP): the
   outbox machinery alone (claim, re-checks, records).
2. **Rate accuracy** — `--rate-messages` (default 500) messages with
   `outbox.rate_sms = --rate` (default 50/s) through the same path; the moment each
   provider call starts is stamped. Reported: achieved rate ((n−1) / first-to-last
   span), the largest deviation of a send from its ideal slot (t0 + i / rate), the
   smallest and largest gap between two sends, and the most sends in any 1-second
   window (must not exceed the rate).

The PostgreSQL database (`--pg-url`, default memberbot_bench_outbox) is dropped and
created again. Results go to bench/results/outbox-<time>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import multiprocessing
import secrets
import socket
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/memberbot_bench_outbox"
PUBLIC_URL = "https://bench.example.com"
FROM = "+15005550006"


# --------------------------------------------------------------------------- fake Twilio


def _serve_fake(port: int) -> None:
    from aiohttp import web

    from tests.fakes import FakeTwilioApi

    fake = FakeTwilioApi()
    app = fake.app()

    async def stats(_request: web.Request) -> web.Response:
        sids = [m["Sid"] for m in fake.messages]
        bodies = [m["Body"] for m in fake.messages]
        return web.json_response(
            {
                "messages": len(sids),
                "distinct_bodies": len(set(bodies)),
                "refused": len(fake.refused),
                "cpu_s": time.process_time(),
            }
        )

    async def reset(_request: web.Request) -> web.Response:
        fake.messages.clear()
        fake.refused.clear()
        return web.json_response({})

    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_up(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url + "/_stats") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the fake provider did not start")


async def _fake(url: str, method: str, path: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.request(method, url + path) as resp:
        return await resp.json()


# --------------------------------------------------------------------------- database


async def _fresh_database(engine_name: str, pg_url: str, tmp: Path) -> str:
    from models.db import make_engine, migrate

    if engine_name == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'bench-outbox.db'}"
    else:
        import asyncpg

        url = pg_url
        base, _, dbname = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
        conn = await asyncpg.connect(base + "/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            await conn.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            await conn.close()
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()
    return url


async def _seed(sessions, *, count: int, first_member: int, tag: str, now: datetime) -> None:
    """`count` members and one due SMS each (a care message, planned today)."""
    from sqlalchemy import insert

    from models.db import transaction
    from models.tables.members import Member
    from models.tables.outbox import OutboxMessage

    chunk = 1000
    today = now.date()
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        members = [
            {
                "id": first_member + start + i,
                "phone": f"+86139{first_member + start + i:08d}",
                "name": "",
                "join_date": date(2026, 1, 1),
                "birthday_calendar": "solar",
                "birthday_leap_month": False,
                "points": 0,
                "cumulative_spend": 0,
                "visits": 0,
                "purchases_count": 0,
                "tier": "points",
                "stopped": False,
                "created_at": now,
                "updated_at": now,
            }  # fmt: skip
            for i in range(n)
        ]
        messages = [
            {
                "member_id": m["id"],
                "kind": "care_d30",
                "occasion": f"{tag}:{m['id']}",
                "planned_on": today,
                "locale": "zh_CN",
                "text": f"{tag} 第{m['id']}条：天冷了，注意保暖。回复TD退订",
                "channel": "sms",
                "via": "twilio",
                "address": m["phone"],
                "status": "queued",
                "send_after": now - timedelta(minutes=1),
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }  # fmt: skip
            for m in members
        ]
        async with transaction(sessions) as s:
            await s.exec(insert(Member.__table__), params=members)
            await s.exec(insert(OutboxMessage.__table__), params=messages)


async def _statuses(sessions, tag: str) -> dict[str, int]:
    from sqlalchemy import func
    from sqlmodel import select

    from models.tables.outbox import OutboxMessage

    async with sessions() as s:
        rows = await s.exec(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.occasion.like(f"{tag}:%"))
            .group_by(OutboxMessage.status)
        )
        return dict(rows.all())


# --------------------------------------------------------------------------- runs


class _Stamped:
    """Wraps a transport and stamps the start of every provider call."""

    def __init__(self, inner, stamps: list[float]):
        self.inner, self.stamps = inner, stamps
        self.channel, self.via, self.receipts = inner.channel, inner.via, inner.receipts

    async def send(self, message):
        self.stamps.append(time.monotonic())
        return await self.inner.send(message)


class _InProcess:
    """A provider that accepts at once without any I/O: the outbox machinery alone."""

    channel, via, receipts = "sms", "twilio", True

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._run = secrets.token_hex(6)  # ids never repeat the fake Twilio's

    async def send(self, message):
        from scheduler.send.transports import SendResult

        await asyncio.sleep(0)
        return SendResult(provider_id=f"IP{self._run}{next(self._ids):08d}", status="queued")


async def _drain(
    url: str, fake_url: str, *, rate: float, args, stamps: list[float], in_process: bool = False
) -> dict:
    from bot.sms_sender import open_sms_sender
    from models.db import make_engine, session_factory
    from models.settings.load import load_settings
    from scheduler.send.sender import Sender, drain_until_idle
    from scheduler.send.transports import Transports
    from tests.fakes import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

    settings = load_settings(
        None,
        environ={},
        overrides={
            "database": {"url": url},
            "server": {"public_url": PUBLIC_URL},
            "sms": {
                "provider": "twilio",
                "twilio": {
                    "account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN,
                    "from_number": FROM, "api_base_url": fake_url,
                },
            },
            "outbox": {
                "rate_sms": rate, "batch_size": args.batch_size, "concurrency": args.concurrency,
            },
            "messaging": {"send_window": "00:00-24:00"},
        },
    )  # fmt: skip
    engine = make_engine(url, pool_size=max(10, args.concurrency))
    try:
        async with open_sms_sender(settings.sms) as sms:
            transports = Transports.build(sms_sender=sms, public_url=PUBLIC_URL)
            transports.sms = _Stamped(_InProcess() if in_process else transports.sms, stamps)
            sender = Sender(
                sessions=session_factory(engine), settings=settings, transports=transports
            )
            pg = url.startswith("postgresql")
            server0 = await _backend_cpu(engine) if pg else {}
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = await drain_until_idle(sender)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            server1 = await _backend_cpu(engine) if pg else {}
        server_cpu = sum(v - server0.get(p, 0.0) for p, v in server1.items()) if pg else None
        return {"wall_s": wall, "cpu_s": cpu, "server_cpu_s": server_cpu, "result": result.__dict__}
    finally:
        await engine.dispose()


async def _backend_cpu(engine) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend of this database (from /proc:
    the server runs on this machine)."""
    import os

    from sqlalchemy import text

    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        pids = [r[0] for r in rows]
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            stat = await asyncio.to_thread(Path(f"/proc/{pid}/stat").read_text)
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return out


def _accuracy(stamps: list[float], rate: float) -> dict:
    stamps = sorted(stamps)
    n = len(stamps)
    span = stamps[-1] - stamps[0]
    ideal = [stamps[0] + i / rate for i in range(n)]
    deviation = max(abs(s - t) for s, t in zip(stamps, ideal, strict=True))
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    most_in_1s = max(bisect.bisect_left(stamps, s + 1.0) - i for i, s in enumerate(stamps))
    return {
        "messages": n,
        "configured_per_s": rate,
        "achieved_per_s": (n - 1) / span if span else float("inf"),
        "span_s": span,
        "max_deviation_ms": deviation * 1000,
        "min_gap_ms": min(gaps) * 1000,
        "max_gap_ms": max(gaps) * 1000,
        "most_in_any_1s": most_in_1s,
    }


async def bench_engine(engine_name: str, args, fake_url: str, tmp: Path) -> dict:
    from models.db import make_engine, session_factory

    url = await _fresh_database(engine_name, args.pg_url, tmp)
    engine = make_engine(url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    out: dict = {"engine": engine_name}
    try:
        # 1. throughput
        await _seed(sessions, count=args.messages, first_member=1, tag="tp", now=now)
        await _fake(fake_url, "POST", "/_reset")
        fake_cpu0 = (await _fake(fake_url, "GET", "/_stats"))["cpu_s"]
        run = await _drain(url, fake_url, rate=0, args=args, stamps=[])
        fake = await _fake(fake_url, "GET", "/_stats")
        statuses = await _statuses(sessions, "tp")
        out["throughput"] = {
            "messages": args.messages,
            "wall_s": run["wall_s"],
            "per_s": args.messages / run["wall_s"],
            "cpu_ms_per_message": run["cpu_s"] * 1000 / args.messages,
            "provider_cpu_ms_per_message": (fake["cpu_s"] - fake_cpu0) * 1000 / args.messages,
            "db_server_cpu_ms_per_message": (
                None if run["server_cpu_s"] is None else run["server_cpu_s"] * 1000 / args.messages
            ),
            "fake_received": fake["messages"],
            "fake_distinct": fake["distinct_bodies"],
            "statuses": statuses,
            "result": run["result"],
        }
        # 1b. the same without HTTP: the outbox machinery alone
        await _seed(
            sessions, count=args.messages, first_member=10_000_001, tag="ip",
            now=datetime.now(UTC),
        )  # fmt: skip
        run = await _drain(url, fake_url, rate=0, args=args, stamps=[], in_process=True)
        out["in_process"] = {
            "messages": args.messages,
            "wall_s": run["wall_s"],
            "per_s": args.messages / run["wall_s"],
            "cpu_ms_per_message": run["cpu_s"] * 1000 / args.messages,
            "db_server_cpu_ms_per_message": (
                None if run["server_cpu_s"] is None else run["server_cpu_s"] * 1000 / args.messages
            ),
            "statuses": await _statuses(sessions, "ip"),
        }
        # 2. rate accuracy
        stamps: list[float] = []
        await _seed(
            sessions, count=args.rate_messages, first_member=args.messages + 1, tag="rate",
            now=datetime.now(UTC),
        )  # fmt: skip
        run = await _drain(url, fake_url, rate=args.rate, args=args, stamps=stamps)
        out["rate"] = {
            **_accuracy(stamps, args.rate),
            "statuses": await _statuses(sessions, "rate"),
        }
    finally:
        await engine.dispose()
    return out


def _report(results: list[dict]) -> str:
    lines = [
        "| engine | messages | wall s | messages/s | sender CPU ms/msg | fake Twilio CPU ms/msg "
        "| PostgreSQL server CPU ms/msg | all sent once |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        t = r["throughput"]
        ok = t["statuses"] == {"sent": t["messages"]} and t["fake_distinct"] == t["messages"]
        ok = ok and t["fake_received"] == t["messages"]
        server = t["db_server_cpu_ms_per_message"]
        lines.append(
            f"| {r['engine']} | {t['messages']:,} | {t['wall_s']:.2f} | {t['per_s']:,.0f} "
            f"| {t['cpu_ms_per_message']:.2f} | {t['provider_cpu_ms_per_message']:.2f} "
            f"| {'–' if server is None else f'{server:.2f}'} "
            f"| {'yes' if ok else 'NO ' + json.dumps(t)} |"
        )
    lines += [
        "",
        "Without HTTP (an in-process provider that accepts at once): the outbox alone",
        "",
        "| engine | messages | wall s | messages/s | sender CPU ms/msg "
        "| PostgreSQL server CPU ms/msg | all sent |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        t = r["in_process"]
        server = t["db_server_cpu_ms_per_message"]
        lines.append(
            f"| {r['engine']} | {t['messages']:,} | {t['wall_s']:.2f} | {t['per_s']:,.0f} "
            f"| {t['cpu_ms_per_message']:.2f} | {'–' if server is None else f'{server:.2f}'} "
            f"| {'yes' if t['statuses'] == {'sent': t['messages']} else t['statuses']} |"
        )
    lines += [
        "",
        "| engine | configured /s | achieved /s | max deviation ms | min gap ms | max gap ms "
        "| most in any 1 s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        a = r["rate"]
        lines.append(
            f"| {r['engine']} | {a['configured_per_s']:g} | {a['achieved_per_s']:.3f} "
            f"| {a['max_deviation_ms']:.1f} | {a['min_gap_ms']:.1f} | {a['max_gap_ms']:.1f} "
            f"| {a['most_in_any_1s']} |"
        )
    return "\n".join(lines)


async def main_async(args) -> list[dict]:
    port = _free_port()
    proc = multiprocessing.get_context("spawn").Process(target=_serve_fake, args=(port,))
    proc.start()
    fake_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(fake_url)
        with tempfile.TemporaryDirectory() as tmp:
            return [
                await bench_engine(name, args, fake_url, Path(tmp))
                for name in args.engines.split(",")
            ]
    finally:
        proc.terminate()
        proc.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--rate-messages", type=int, default=500)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(_report(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"outbox-{stamp}.json"
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
