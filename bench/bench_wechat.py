"""Benchmark of `POST /wechat`: requests/s and p50/p99 of one server process, with wrk.

    python bench/bench_wechat.py                       # SQLite + PostgreSQL, 10 s per run
    python bench/bench_wechat.py --duration 20 --engines sqlite

Each run starts one server process (web.run_app, access log off) pinned to one CPU
(wrk gets the other one when there are two), and measures, in the same run:

- `echo`      — a bare aiohttp handler that returns the body it got;
- `wechatpy`  — wechatpy alone: signature check (+ AES decrypt), `parse_message`,
                `create_reply(...).render()` (+ AES encrypt); no database;
- `adapter`   — the real app (`create_app`) with a conversation that answers without
                the database: signature, XML checks, de-duplication (the claim and
                the stored answer in `inbound_messages`) and the reply;
- `full`      — the same with a conversation that reads the bound member's points
                through the sessions (one small SELECT), as the real handlers will.

Every request is a bound member's "积分" with a fresh MsgId (plain mode: made by the
wrk Lua script; AES mode: pre-encrypted bodies, one per request), so the app never
takes the cheaper de-duplicated branch. The signed query is made just before a run
(WeChat's plain-mode signature covers only token/timestamp/nonce, so one signed URL
is valid for every body; the app does not check timestamp freshness by default).
Besides req/s and latency, the server's CPU time per request is reported (from
/proc): it is the figure least disturbed by other work on the machine.

The PostgreSQL database (`--pg-url`, default memberbot_bench_wechat) is dropped and
created again. Results go to bench/results/wechat-<time>.json and .md (git-ignored).
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
from datetime import UTC, date, datetime
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


class PointsConversation:
    """Stands in for the real handlers: one SELECT of the bound member's points."""

    def __init__(self, app):
        self.app = app

    async def handle(self, inbound):
        from sqlmodel import select

        from bot.appkeys import SESSIONS
        from bot.conversation import Reply
        from models.tables import Identity, Member

        async with self.app[SESSIONS]() as session:
            points = (
                await session.exec(
                    select(Member.points)
                    .join(Identity, Identity.member_id == Member.id)
                    .where(Identity.channel == "wechat", Identity.address == inbound.sender)
                )
            ).first()
        if points is None:
            return Reply("请先绑定会员")
        return Reply(f"您的积分：{points}")


def bench_settings(db_url: str):
    from bot.config import load_settings

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
        },
    )


class FixedConversation:
    """No database: isolates the adapter and the de-duplication from the conversation."""

    async def handle(self, inbound):
        from bot.conversation import Reply

        return Reply("您的积分：1007")


def full_app(db_url: str, *, read_points: bool = True):
    from bot.app import create_app
    from bot.appkeys import CONVERSATION

    app = create_app(bench_settings(db_url), migrate_on_start=False)
    app[CONVERSATION] = PointsConversation(app) if read_points else FixedConversation()
    return app


def serve(kind: str, port: int, db_url: str | None) -> None:
    from aiohttp import web

    if kind == "echo":
        app = echo_app()
    elif kind == "wechatpy":
        app = wechatpy_app()
    else:
        app = full_app(db_url, read_points=kind == "full")
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --------------------------------------------------------------------------- database


def prepare_database(db_url: str) -> None:
    """A fresh, migrated database with MEMBERS members, each bound to a WeChat openid."""
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite+aiosqlite:///")
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    asyncio.run(_fill_database(db_url))


async def _fill_database(db_url: str) -> None:
    from sqlalchemy import insert

    from models.db import make_engine, migrate
    from models.tables import Identity, Member

    if db_url.startswith("postgresql"):
        import asyncpg

        base, _, name = db_url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
        conn = await asyncpg.connect(base + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    engine = make_engine(db_url)
    await migrate(engine)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Member.__table__),
            [
                {
                    "phone": f"+86138{i:08d}",
                    "name": f"会员{i}",
                    "join_date": date(2026, 1, 1),
                    "points": 1000 + i,
                    "birthday_calendar": "solar",
                    "birthday_leap_month": False,
                    "cumulative_spend": 0,
                    "visits": 0,
                    "purchases_count": 0,
                    "tier": "points",
                    "stopped": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(MEMBERS)
            ],
        )
        await conn.execute(
            insert(Identity.__table__),
            [
                {
                    "member_id": i + 1,
                    "channel": "wechat",
                    "address": openid(i),
                    "active": True,
                    "bad": False,
                    "created_at": now,
                }
                for i in range(MEMBERS)
            ],
        )
    await engine.dispose()


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
    proc = subprocess.Popen(cmd, cwd=ROOT)
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


def measure(kind, mode, db_url, scripts, args, cpus) -> dict:
    """Start the server, warm it up, measure; the warm-up uses other MsgIds than the run."""
    server_cpu, wrk_cpu = cpus
    script, warm_arg, run_arg = scripts[mode]
    proc, port = start_server(kind, db_url, server_cpu)
    try:
        if kind in ("adapter", "full"):
            answer = check_answer(port, mode)
            assert "您的积分：1007" in answer, answer
        common = dict(connections=args.connections, threads=args.threads, cpu=wrk_cpu)
        run_wrk(port, script, warm_arg, duration=args.warmup, **common)
        cpu_before = cpu_seconds(proc.pid)
        result = run_wrk(port, script, run_arg, duration=args.duration, **common)
        result["cpu_us_per_request"] = (
            1e6 * (cpu_seconds(proc.pid) - cpu_before) / max(1, result["requests"])
        )
    finally:
        stop_server(proc)
    result.update(kind=kind, mode=mode)
    if db_url:
        result["late_answers"] = asyncio.run(count_late(db_url))
    return result


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
    for mode in ("plain", "aes"):
        for kind in ("echo", "wechatpy"):
            if kind == "echo" and mode == "aes":
                continue
            rows.append({**measure(kind, mode, None, scripts, args, cpus), "engine": "-"})
            print(_line(rows[-1]), flush=True)
    for engine in args.engines:
        for mode in ("plain", "aes"):
            for kind in ("adapter", "full"):
                if engine == "sqlite":
                    db_url = f"sqlite+aiosqlite:///{workdir / f'bench-{mode}.db'}"
                else:
                    db_url = args.pg_url
                prepare_database(db_url)
                rows.append({**measure(kind, mode, db_url, scripts, args, cpus), "engine": engine})
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
        f"cpu {r['cpu_us_per_request']:6.0f} us/req  ({r['requests']} requests, "
        f"non-2xx {r['non_2xx']}, late {r.get('late_answers', '-')}) {r['socket_errors']}"
    )


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
        "| server CPU µs/req | late answers | non-2xx |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = f"{100 * r['rps'] / base[r['mode']]:.0f} %" if r["mode"] in base else "-"
        out.append(
            f"| {r['kind']} | {r['mode']} | {r['engine']} | {r['rps']:.0f} | {share} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_request']:.0f} | "
            f"{r.get('late_answers', '-')} | {r['non_2xx']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="(internal) run one server kind in the foreground")
    s.add_argument("kind", choices=["echo", "wechatpy", "adapter", "full"])
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
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.kind, args.port, args.db)
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
