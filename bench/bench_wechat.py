"""Benchmark of `POST /wechat`: requests/s and p50/p99 of one server process, with wrk.

    python bench/bench_wechat.py                       # SQLite + PostgreSQL, 10 s per run
    python bench/bench_wechat.py --duration 20 --engines sqlite
    python bench/bench_wechat.py --kinds full --modes plain --py-spy   # profile it
    python bench/bench_wechat.py profile bench/results/wechat-full-plain-sqlite.txt

Each run starts one server process (web.run_app, access log off) pinned to one CPU
(wrk gets the other one when there are two), and measures, in the same run:

- `echo`        — a bare aiohttp handler that returns the body it got;
- `wechatpy`    — wechatpy alone: signature check (+ AES decrypt), `parse_message`,
                  `create_reply(...).render()` (+ AES encrypt); no database;
- `adapter`     — the real app (`create_app`) with a conversation that answers without
                  the database: signature, XML checks, de-duplication (the claim and
                  the stored answer in `inbound_messages`) and the reply;
- `full`        — the real app with the real conversation (`bot.bot.MemberBot`, console
                  SMS sender): a bound member's points answer — balance, tier, spend,
                  next reward, next tier and by when, next expiry — with the member's
                  `last_inbound_at` written on every message (as for a member who last
                  wrote more than a minute ago: the usual "积分" now and then);
- `full-uncached` — `full` without the quick path's memory of replies
                  (`bot.quick.ANSWERS_KEPT = 0`): every answer's tier arithmetic and
                  template run again (in `full` the 1,000 members' unchanged rows make
                  nearly every reply a remembered one; the rows are read either way);
- `full-repeat` — the same as `full` with the bot's default 60 s for that stamp: the 1,000
                  members come back within the minute, so no request writes it (a
                  conversation's second and later messages).

The database holds 1,000 members, each bound to an openid and with two purchases in
the last half year recorded by `record_purchase` (points, lots expiring on
31 December, tier evaluation), so every answer has a tier window and an expiry to
report. Every request is a bound member's "积分" with a fresh MsgId (plain mode: made
by the wrk Lua script; AES mode: pre-encrypted bodies, one per request), so the app
never takes the cheaper de-duplicated branch. The signed query is made just before a
run (WeChat's plain-mode signature covers only token/timestamp/nonce, so one signed
URL is valid for every body; the app does not check timestamp freshness by default).
Besides req/s and latency, the server's CPU time per request is reported (from
/proc): it is the figure least disturbed by other work on the machine.

The PostgreSQL database (`--pg-url`, default memberbot_bench_wechat) is dropped and
created again. Results go to bench/results/wechat-<time>.json and .md (git-ignored),
the servers' output to bench/results/wechat-server-<kind>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-wechat-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wxbench0123456789"
ACCOUNT = "gh_bench"
MEMBERS = 1000
TEXT = "积分"
MSG_TEMPLATE = (
    "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
    "<FromUserName><![CDATA[{openid}]]></FromUserName>"
    "<CreateTime>1790000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[积分]]></Content><MsgId>{msg_id}</MsgId></xml>"
)
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/memberbot_bench_wechat"
KINDS = ["echo", "wechatpy", "adapter", "full", "full-uncached", "full-repeat"]
DB_KINDS = ("adapter", "full", "full-uncached", "full-repeat")


def openid(i: int) -> str:
    return f"o_bench_{i % MEMBERS:04d}"


# --------------------------------------------------------------------------- servers


def echo_app():
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", echo)
    return app


def wechatpy_app():
    """What wechatpy alone costs per message: the floor of any WeChat bot in Python."""
    from aiohttp import web
    from wechatpy import create_reply, parse_message
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.utils import check_signature

    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)

    async def handle(request: web.Request) -> web.Response:
        q = request.query
        body = await request.text()
        aes = q.get("encrypt_type") == "aes"
        if aes:
            body = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
        else:
            check_signature(TOKEN, q["signature"], q["timestamp"], q["nonce"])
        msg = parse_message(body)
        xml = create_reply("您的积分：1234", msg).render()
        if aes:
            xml = crypto.encrypt_message(xml, q["nonce"], q["timestamp"])
        return web.Response(text=xml, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", handle)
    return app


def bench_settings(db_url: str):
    from models.settings.load import load_settings

    return load_settings(
        None,
        environ={},
        overrides={
            "database": {"url": db_url},
            "wechat": {
                "enabled": True,
                "app_id": APP_ID,
                "app_secret": "bench-secret",
                "token": TOKEN,
                "encoding_aes_key": AES_KEY,
                # Late answers (past the 4 s deadline) must not leave the machine.
                "api_base_url": "http://127.0.0.1:9",
            },
            "sms": {"provider": "console"},
            # Points expire on 31 December, so the answer names the next expiry too.
            "points": {"expiry": {"policy": "calendar_year"}},
        },
    )


class FixedConversation:
    """No database: isolates the adapter and the de-duplication from the conversation."""

    async def handle(self, inbound):
        from bot.conversation import Reply

        return Reply("您的积分：1007")


def full_app(db_url: str, kind: str):
    """The real app (`create_app`). `adapter`: with `FixedConversation`; `full` and
    `full-repeat`: with the real conversation, `bot.bot.MemberBot` and the configured
    (console) SMS sender. `full` rewrites the member's `last_inbound_at` on every message,
    as for a member who last wrote more than a minute ago (the usual case: one "积分" now
    and then); `full-repeat` keeps the bot's default, where a member writing again within
    60 s costs no such write (and with 1,000 members cycling, nearly every request is one)."""
    from datetime import timedelta

    from bot.app import create_app
    from bot.appkeys import CONVERSATION, SESSIONS, SETTINGS, SMS_SENDER
    from bot.bot import TOUCH_EVERY, MemberBot

    app = create_app(bench_settings(db_url), migrate_on_start=False)
    if kind == "adapter":
        app[CONVERSATION] = FixedConversation()
        return app
    touch_every = TOUCH_EVERY if kind == "full-repeat" else timedelta(0)
    if kind == "full-uncached":
        from bot import quick

        quick.ANSWERS_KEPT = 0  # lru_cache(maxsize=0): nothing remembered

    async def member_bot(app):  # after the database and SMS sender contexts
        app[CONVERSATION] = MemberBot(
            settings=app[SETTINGS],
            sessions=app[SESSIONS],
            sms_sender=app[SMS_SENDER],
            touch_every=touch_every,
        )
        yield

    app.cleanup_ctx.append(member_bot)
    return app


def serve(kind: str, port: int, db_url: str | None) -> None:
    from aiohttp import web

    if kind == "echo":
        app = echo_app()
    elif kind == "wechatpy":
        app = wechatpy_app()
    else:
        app = full_app(db_url, kind)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --------------------------------------------------------------------------- database


def member_phone(i: int) -> str:
    return f"+86138{i:08d}"


def purchase_history(i: int) -> list[tuple[int, Decimal]]:
    """(days ago, yuan) of member `i`'s purchases: two in the last half year, together
    under the 3,000 points of gold, so the answer has a tier window to report."""
    return [(150, Decimal(300 + (i * 37) % 900)), (40, Decimal(200 + (i * 53) % 700))]


def prepare_database(db_url: str) -> None:
    """A fresh, migrated database with MEMBERS members, each bound to a WeChat openid and
    with the purchases of `purchase_history`, recorded by `record_purchase` (points, lots
    with their expiry, tier evaluation: the same rows the API would write)."""
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite+aiosqlite:///")
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    asyncio.run(_fill_database(db_url))


async def _fill_database(db_url: str) -> None:
    from sqlalchemy import insert, select, text

    from models.db import make_engine, migrate, session_factory, transaction
    from models.purchases.input import PurchaseIn
    from models.purchases.record import record_purchase
    from models.tables import Identity, Member, Store

    if db_url.startswith("postgresql"):
        import asyncpg

        base, _, name = db_url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
        conn = await asyncpg.connect(base + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    settings = bench_settings(db_url)
    rules, tz = settings.loyalty, settings.brand.tz
    engine = make_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        session.add(Store(code="S001", name="南京西路店", city="上海"))
    for first in range(0, MEMBERS, 100):
        async with transaction(sessions) as session:
            for i in range(first, min(first + 100, MEMBERS)):
                for j, (days_ago, amount) in enumerate(purchase_history(i)):
                    data = PurchaseIn(
                        receipt_no=f"B{i:05d}-{j}",
                        phone=member_phone(i),
                        store="S001",
                        amount=amount,
                        at=now - timedelta(days=days_ago),
                    )
                    await record_purchase(session, rules=rules, tz=tz, data=data)
    async with engine.begin() as conn:
        ids = dict((await conn.execute(select(Member.phone, Member.id))).all())
        await conn.execute(
            Member.__table__.update()
            .where(Member.__table__.c.id.in_(ids.values()))
            .values(name="会员")
        )
        await conn.execute(
            insert(Identity.__table__),
            [
                {
                    "member_id": ids[member_phone(i)],
                    "channel": "wechat",
                    "address": openid(i),
                    "active": True,
                    "bad": False,
                    "created_at": now,
                }
                for i in range(MEMBERS)
            ],
        )
    # Statistics and a clean state, as a database in service has them: without
    # statistics PostgreSQL plans the member reads as scans of the whole table, and
    # autovacuum would otherwise clean up after the fill during the first measured row.
    if db_url.startswith("postgresql"):
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("VACUUM ANALYZE"))
            await auto.execute(text("CHECKPOINT"))
    else:
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def reset_database(db_url: str) -> None:
    """Between rows: forget the messages of the previous row and when members last wrote."""
    from sqlalchemy import delete, update

    from models.db import make_engine
    from models.tables import Identity, InboundMessage, PendingAction

    engine = make_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(delete(InboundMessage.__table__))
        await conn.execute(delete(PendingAction.__table__))
        await conn.execute(update(Identity.__table__).values(last_inbound_at=None))
    await engine.dispose()


async def member_points(db_url: str, i: int) -> int:
    from sqlalchemy import select

    from models.db import make_engine
    from models.tables import Member

    engine = make_engine(db_url)
    async with engine.connect() as conn:
        points = await conn.scalar(select(Member.points).where(Member.phone == member_phone(i)))
    await engine.dispose()
    return int(points)


# --------------------------------------------------------------------------- wrk


PLAIN_LUA = r"""
local counter = 0
local offset = 0
local path = "%(path)s"
local headers = {["Content-Type"] = "text/xml"}
local template = [==[%(template)s]==]
function init(args)
  offset = tonumber(args[1] or "0")
end
request = function()
  counter = counter + 1
  local id = offset + (tid or 1) * 100000000 + counter
  local body = string.format(template, string.format("o_bench_%%04d", counter %% %(members)d), id)
  return wrk.format("POST", path, headers, body)
end
"""

AES_LUA = r"""
local lines = {}
local counter = 0
local nthreads = %(threads)d
local headers = {["Content-Type"] = "text/xml"}
function init(args)
  for line in io.lines(args[1]) do
    local tab = string.find(line, "\t", 1, true)
    lines[#lines + 1] = {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)}
  end
end
request = function()
  local i = (counter * nthreads + (tid or 1) - 1) %% #lines + 1
  counter = counter + 1
  return wrk.format("POST", lines[i][1], headers, lines[i][2])
end
"""

THREAD_SETUP = r"""
local next_tid = 0
function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end
"""


def signed_query() -> dict[str, str]:
    from wechatpy.utils import WeChatSigner

    timestamp, nonce = str(int(time.time())), os.urandom(5).hex()
    signer = WeChatSigner()
    signer.add_data(TOKEN, timestamp, nonce)
    return {"signature": signer.signature, "timestamp": timestamp, "nonce": nonce}


def plain_script(workdir: Path) -> Path:
    from urllib.parse import urlencode

    path = "/wechat?" + urlencode(signed_query())
    template = MSG_TEMPLATE.replace("%", "%%").format(openid="%s", msg_id="%d")
    lua = THREAD_SETUP + PLAIN_LUA % {"path": path, "template": template, "members": MEMBERS}
    target = workdir / "plain.lua"
    target.write_text(lua)
    return target


def encrypted(xml: str) -> tuple[dict[str, str], str]:
    """A safe-mode request for `xml`: (query, body), as WeChat sends it."""
    import xmltodict
    from wechatpy.crypto import WeChatCrypto

    q = signed_query()
    sealed = WeChatCrypto(TOKEN, AES_KEY, APP_ID).encrypt_message(xml, q["nonce"], q["timestamp"])
    envelope = xmltodict.parse(sealed)["xml"]
    q.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
    body = (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
    )
    return q, body


def aes_requests(target: Path, count: int, first_id: int) -> Path:
    """`count` distinct encrypted requests, one line each: path TAB body."""
    from urllib.parse import urlencode

    lines = []
    for i in range(count):
        q, body = encrypted(MSG_TEMPLATE.format(openid=openid(i), msg_id=first_id + i))
        lines.append(f"/wechat?{urlencode(q)}\t{body}")
    target.write_text("\n".join(lines) + "\n")
    return target


def aes_script(workdir: Path, threads: int) -> Path:
    target = workdir / "aes.lua"
    target.write_text(THREAD_SETUP + AES_LUA % {"threads": threads})
    return target


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", value)
    assert m, value
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    port: int,
    script: Path,
    script_arg: str,
    *,
    duration: int,
    connections: int,
    threads: int,
    cpu: str | None,
) -> dict:
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
        "-s", str(script), f"http://127.0.0.1:{port}", "--", script_arg,
    ]  # fmt: skip
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    return {
        "rps": rps,
        "requests": total,
        "p50_ms": _ms(pct["50"]),
        "p99_ms": _ms(pct["99"]),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, db_url: str | None, cpu: str | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, __file__, "serve", kind, "--port", str(port)]
    if db_url:
        cmd += ["--db", db_url]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    log = open(RESULTS / f"wechat-server-{kind}.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_answer(port: int, mode: str) -> str:
    """One request by hand: the full path must answer the member's real points."""
    import urllib.request
    from urllib.parse import urlencode

    import xmltodict
    from wechatpy.crypto import WeChatCrypto

    xml = MSG_TEMPLATE.format(openid=openid(7), msg_id=1)
    q, body = encrypted(xml) if mode == "aes" else (signed_query(), xml)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/wechat?{urlencode(q)}", data=body.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = resp.read().decode()
    if mode == "aes":
        env = xmltodict.parse(answer)["xml"]
        crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
        answer = crypto.decrypt_message(answer, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
    return answer


def expected_answer(kind: str, db_url: str | None) -> str:
    """What the hand-made request (member 7's "积分") must get back."""
    if kind == "adapter":
        return "您的积分：1007"
    points = asyncio.run(member_points(db_url, 7))
    return f"当前积分：{points:,} 分"


def measure(kind, mode, db_url, scripts, args, cpus, engine="-") -> dict:
    """Start the server, warm it up, measure; the warm-up uses other MsgIds than the run."""
    server_cpu, wrk_cpu = cpus
    script, warm_arg, run_arg = scripts[mode]
    if db_url:
        asyncio.run(reset_database(db_url))
    proc, port = start_server(kind, db_url, server_cpu)
    spy = None
    try:
        if kind in DB_KINDS:
            answer = check_answer(port, mode)
            expected = expected_answer(kind, db_url)
            assert expected in answer, (expected, answer)
        common = dict(connections=args.connections, threads=args.threads, cpu=wrk_cpu)
        run_wrk(port, script, warm_arg, duration=args.warmup, **common)
        if args.py_spy and kind in DB_KINDS:
            spy = start_py_spy(proc.pid, f"{kind}-{mode}-{engine}", args.duration)
        backends = asyncio.run(pg_backends(db_url)) if is_pg(db_url) else set()
        db_before = {pid: cpu_seconds_or_zero(pid) for pid in backends}
        cpu_before = cpu_seconds(proc.pid)
        result = run_wrk(port, script, run_arg, duration=args.duration, **common)
        requests = max(1, result["requests"])
        result["cpu_us_per_request"] = 1e6 * (cpu_seconds(proc.pid) - cpu_before) / requests
        if backends:
            backends |= asyncio.run(pg_backends(db_url))
            used = sum(cpu_seconds_or_zero(p) - db_before.get(p, 0.0) for p in backends)
            result["db_cpu_us_per_request"] = 1e6 * used / requests
        if spy is not None:
            spy.wait(args.duration + 30)
    finally:
        stop_server(proc)
    result.update(kind=kind, mode=mode)
    if db_url:
        result["late_answers"] = asyncio.run(count_late(db_url))
    return result


def start_py_spy(pid: int, name: str, duration: int) -> subprocess.Popen:
    """Sample the server with py-spy during the measured run: collapsed stacks in
    bench/results/wechat-<name>.txt (read them with `summarise_profile`, or feed them
    to a flame graph tool). Sampling costs the server a little: not for the figures."""
    out = RESULTS / f"wechat-{name}.txt"
    cmd = [
        "py-spy", "record", "--pid", str(pid), "--duration", str(duration), "--rate", "250",
        "--format", "raw", "--nonblocking", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Where a sample's time goes: the innermost frame that belongs to one of these (checked
# in order). Event-loop frames are passed over on the way out, so a socket write is
# charged to whoever wrote (asyncpg, aiohttp); what is left — the loop's own work, such
# as the self-pipe wake-ups of aiosqlite's thread — is "asyncio event loop".
IDLE = "event loop idle (epoll wait)"
CATEGORIES = [
    ("database driver (sqlite3 on the loop or aiosqlite's thread / asyncpg)",
     ("aiosqlite/", "asyncpg/", "_connection_worker_thread", "models/rawdb.py")),
    ("SQLAlchemy (session, ORM, Core, greenlet bridge)", ("sqlalchemy/", "sqlmodel/")),
    ("aiohttp (HTTP server)", ("aiohttp/", "multidict/", "yarl/")),
    ("WeChat wire (wechatpy, XML, AES, adapter)",
     ("wechatpy/", "xmltodict", "bot/channels/", "cryptography/", "xml/etree")),
    ("reply templates (jinja2)", ("jinja2/", "scheduler/text.py")),
    ("inbound log + group commit", ("bot/inbound_log.py", "models/group_commit.py",
                                    "bot/eager.py")),
    ("bot + domain code", ("bot/", "models/")),
]  # fmt: skip
EVENT_LOOP = ("asyncio/", "selectors.py")


def _category(frames: list[str]) -> str:
    if "EpollSelector.select" in frames[-1]:
        return IDLE
    # What runs the loop (run_app, the bench's serve) is no one's cost.
    loop = [i for i, f in enumerate(frames) if f.startswith("BaseEventLoop._run_once ")]
    frames = frames[loop[-1] :] if loop else frames
    for frame in reversed(frames):
        if any(n in frame for n in EVENT_LOOP):
            continue
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    if any(n in f for f in frames for n in EVENT_LOOP):
        return "asyncio event loop"
    return "other"


def summarise_profile(path: Path, top: int = 40) -> str:
    """py-spy's collapsed stacks as shares of the busy samples: by category (innermost
    frame that belongs to one, see CATEGORIES), by function inclusive (each function once
    per stack) and exclusive (innermost frame). Greenlet stacks (SQLAlchemy's async bridge)
    start at the greenlet, so their callers do not show in the inclusive figures."""
    inclusive: dict[str, int] = {}
    exclusive: dict[str, int] = {}
    categories: dict[str, int] = {}
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        category = _category(frames)
        if category == IDLE:
            idle += n
            continue
        total += n
        categories[category] = categories.get(category, 0) + n
        names = [re.sub(r" \(.*?\)$", "", f) for f in frames]
        for f in set(names):
            inclusive[f] = inclusive.get(f, 0) + n
        exclusive[names[-1]] = exclusive.get(names[-1], 0) + n
    lines = [f"{total} busy samples ({idle} more idle in epoll, left out)", "by category:"]
    for name, n in sorted(categories.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * n / total:5.1f} %  {name}")
    for title, table in (("inclusive:", inclusive), ("exclusive:", exclusive)):
        lines.append(title)
        for f, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {100 * n / total:5.1f} %  {f}")
    return "\n".join(lines)


def is_pg(db_url: str | None) -> bool:
    return bool(db_url) and db_url.startswith("postgresql")


async def pg_backends(db_url: str) -> set[int]:
    """The PostgreSQL server processes serving the bench database (the app's
    connections), so their CPU time can be counted too."""
    import asyncpg

    base, _, name = db_url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return {r["pid"] for r in rows}


def cpu_seconds_or_zero(pid: int) -> float:
    """`cpu_seconds`, or 0 for a process that is gone (or not readable)."""
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def count_late(db_url: str) -> int:
    """Messages whose answer missed the deadline (answered `success`, then by the API)."""
    from sqlalchemy import func, select

    from models.db import make_engine
    from models.tables import InboundMessage

    engine = make_engine(db_url)
    async with engine.connect() as conn:
        late = await conn.scalar(select(func.count()).where(InboundMessage.status != "answered"))
    await engine.dispose()
    return int(late or 0)


def main_bench(args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    cpus = (None, None)
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        cpus = ("0", "1")
    workdir = Path(tempfile.mkdtemp(prefix="bench-wechat-"))
    warm = aes_requests(workdir / "aes-warm.txt", args.aes_requests // 4, 800_000_000_000)
    run = aes_requests(workdir / "aes-run.txt", args.aes_requests, 900_000_000_000)
    scripts = {
        "plain": (plain_script(workdir), "5000000000000", "0"),
        "aes": (aes_script(workdir, args.threads), str(warm), str(run)),
    }
    rows: list[dict] = []
    for mode in args.modes:
        for kind in ("echo", "wechatpy"):
            if kind not in args.kinds or (kind == "echo" and mode == "aes"):
                continue
            rows.append({**measure(kind, mode, None, scripts, args, cpus), "engine": "-"})
            print(_line(rows[-1]), flush=True)
    for engine in args.engines:
        if not set(DB_KINDS) & set(args.kinds):
            break
        if engine == "sqlite":
            db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        else:
            db_url = args.pg_url
        started = time.monotonic()
        prepare_database(db_url)
        print(f"{engine}: database prepared in {time.monotonic() - started:.0f} s", flush=True)
        for mode in args.modes:
            for kind in DB_KINDS:
                if kind not in args.kinds:
                    continue
                row = measure(kind, mode, db_url, scripts, args, cpus, engine)
                rows.append({**row, "engine": engine})
                print(_line(rows[-1]), flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {
        "at": stamp,
        "duration_s": args.duration,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "aes_requests": args.aes_requests,
        "aes_wrapped": [
            r["kind"] for r in rows if r["mode"] == "aes" and r["requests"] > args.aes_requests
        ],
        "cpus": os.cpu_count(),
        "pinned": cpus != (None, None),
        "python": sys.version.split()[0],
    }
    (RESULTS / f"wechat-{stamp}.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2, ensure_ascii=False)
    )
    md = _markdown(meta, rows)
    (RESULTS / f"wechat-{stamp}.md").write_text(md)
    print(md)
    shutil.rmtree(workdir, ignore_errors=True)


def _line(r: dict) -> str:
    return (
        f"{r['kind']:9} {r['mode']:5} {r['engine']:10} {r['rps']:7.0f} req/s  "
        f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
        f"cpu {r['cpu_us_per_request']:6.0f} us/req"
        + (f" + db {r['db_cpu_us_per_request']:4.0f}" if "db_cpu_us_per_request" in r else "")
        + f"  ({r['requests']} requests, "
        f"non-2xx {r['non_2xx']}, late {r.get('late_answers', '-')}) {r['socket_errors']}"
    )


def _db_cpu(r: dict) -> str:
    value = r.get("db_cpu_us_per_request")
    return "-" if value is None else f"{value:.0f}"


def _markdown(meta: dict, rows: list[dict]) -> str:
    base = {r["mode"]: r["rps"] for r in rows if r["kind"] == "wechatpy"}
    out = [
        f"# POST /wechat benchmark {meta['at']}",
        "",
        f"wrk -t{meta['wrk_threads']} -c{meta['connections']} -d{meta['duration_s']}s, "
        f"one server process{' pinned to CPU 0, wrk on CPU 1' if meta['pinned'] else ''}, "
        f"Python {meta['python']}.",
        "",
        "| path | mode | database | req/s | % of wechatpy-only | p50 ms | p99 ms "
        "| server CPU µs/req | PostgreSQL CPU µs/req | late answers | non-2xx |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = f"{100 * r['rps'] / base[r['mode']]:.0f} %" if r["mode"] in base else "-"
        out.append(
            f"| {r['kind']} | {r['mode']} | {r['engine']} | {r['rps']:.0f} | {share} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_request']:.0f} | "
            f"{_db_cpu(r)} | {r.get('late_answers', '-')} | {r['non_2xx']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="(internal) run one server kind in the foreground")
    s.add_argument("kind", choices=KINDS)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--db")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--aes-requests", type=int, default=60_000)
    parser.add_argument(
        "--engines", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--modes", nargs="+", default=["plain", "aes"], choices=["plain", "aes"])
    parser.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument(
        "--py-spy", action="store_true", help="profile the adapter and full rows with py-spy"
    )
    p = sub.add_parser("prepare", help="(internal) fill a database for `serve`")
    p.add_argument("--db", required=True)
    p = sub.add_parser("profile", help="summarise a py-spy file written by --py-spy")
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.kind, args.port, args.db)
    elif args.command == "prepare":
        prepare_database(args.db)
    elif args.command == "profile":
        print(summarise_profile(args.file, args.top))
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
