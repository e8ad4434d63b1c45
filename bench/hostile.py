"""Hostile-input pass over every HTTP endpoint: no 5xx, no traceback, no row changed.

    python bench/hostile.py                                   # SQLite in a temp folder
    python bench/hostile.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/memberbot_x
    python bench/hostile.py --requests 20000 --concurrency 20

Starts `memberbot serve --demo --config <temp config>` (`python -m bot.cli`, this
checkout's code) on 127.0.0.1 with a free port, waits for it, snapshots every table
(row count + a hash of the rows), fires at least `--requests` requests that are all
unauthenticated or invalid — malformed, oversized and wrongly typed bodies, missing or
wrong signatures, keys, tokens and cookies, NUL and control characters, digits that are
not 0-9, bytes that are not UTF-8 in the path, query, headers and body, huge numbers,
wrong content types, path traversal — across every endpoint of CONTRACT.md "HTTP" and
the staff console, `--concurrency` at a time (aiohttp client; raw sockets for bytes
aiohttp will not send), then snapshots again and prints the counts.

Exit status 1 if any answer was a 5xx, any body or the server's log holds "Traceback",
or any row changed (`--allow-table T` exempts a table that records refused attempts).
`staff_sign_in_failures` is exempt by default: a failed sign-in must be written down,
or replicas could not share the limit (ISSUE 10.7); it is reported on its own line.
The PostgreSQL database given is dropped and created again: never point it at data.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from yarl import URL

ATTEMPT_TABLES = {"staff_sign_in_failures"}

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_KEY = "bench-hostile-operator-key-0123456789"
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CONFIG = f"""
[server]
host = "127.0.0.1"
port = 0
public_url = "https://bot.example.com"
[database]
url = "{{url}}"
[brand]
name = "Hostile"
[wechat]
enabled = true
app_id = "wx0123456789abcdef"
app_secret = "secret"
token = "wechat-token"
encoding_aes_key = "{WECHAT_AES_KEY}"
api_base_url = "http://127.0.0.1:9"
[sms]
provider = "console"
[sms.twilio]
auth_token = "twilio-auth-token"
[api]
keys = ["{API_KEY}"]
[scheduler]
enabled = false
[outbox]
poll_interval = 3600
"""

PHONE = "+8613800138001"  # a demo member
DEMO_TOKEN = "demo-token-A001"  # a demo assistant's token (bot.demo)
ODD_DIGITS = ["²", "①", "١", "１", "𝟏", "٣٤", "9" * 30, "9" * 5000, "-1", "0", "1_0", "1e9"]
BAD_TEXT = ["a\x00b", "\x01", "\x7f", "\ud800", "a\u202eb", "\x1b[31m", "%00", "%FF"]
TRAVERSAL = ["..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/", "....//", "%252e%252e", "%C0%AE%C0%AE"]
BAD_KEYS = ["", "Bearer", "Bearer ", "Bearer wrong", "Basic " + "a" * 20, "Bearer " + "x" * 5000,
            f"bearer {API_KEY[:-1]}", "Bearer demo-api-key-please-change", "Bearer\ta"]  # fmt: skip
BAD_TOKENS = ["Bearer demo-token-A00", "Bearer \u00e9", "Bearer " + "0" * 64, "Token x"]

# (method, path template, auth kind); {id} {phone} {code} are filled with hostile values
ENDPOINTS = [
    ("GET", "/wechat", "wechat"), ("POST", "/wechat", "wechat"),
    ("POST", "/sms/twilio", "twilio"), ("POST", "/sms/twilio/status", "twilio"),
    ("POST", "/api/members", "key"), ("POST", "/api/purchases", "key"),
    ("POST", "/api/stores", "key"), ("POST", "/api/assistants", "key"),
    ("GET", "/api/members/{phone}", "key"), ("POST", "/api/members/{phone}/stop", "key"),
    ("POST", "/api/members/{phone}/resume", "key"), ("POST", "/api/visits", "key"),
    ("GET", "/api/card-applications", "key"), ("POST", "/api/card-applications", "key"),
    ("POST", "/api/card-applications/{id}/status", "key"), ("GET", "/api/eligible-members", "key"),
    ("POST", "/api/greetings", "token"), ("POST", "/api/vouchers/{code}/use", "key"),
    ("POST", "/api/vouchers/{code}/void", "key"), ("POST", "/api/returns", "key"),
    ("POST", "/api/points/adjustments", "key"), ("GET", "/api/inbox", "token"),
    ("POST", "/api/inbox/{id}/reply", "token"), ("POST", "/api/inbox/{id}/close", "token"),
    ("POST", "/sms/aliyun/up", "push"), ("POST", "/sms/aliyun/report", "push"),
    ("GET", "/metrics", "metrics"), ("GET", "/api/openapi.json", "none"),
    ("GET", "/healthz", "none"), ("GET", "/staff/signin", "none"),
    ("POST", "/staff/signin", "form"), ("POST", "/staff/signout", "cookie"),
    ("POST", "/staff/locale", "cookie"), ("GET", "/staff/", "cookie"),
    ("POST", "/staff/", "cookie"), ("GET", "/staff/today", "cookie"),
    ("GET", "/staff/members/{id}", "cookie"), ("POST", "/staff/members/{id}/greeting", "cookie"),
    ("GET", "/staff/cards", "cookie"), ("POST", "/staff/cards/{id}/advance", "cookie"),
    ("GET", "/staff/manager", "cookie"), ("POST", "/staff/manager/redistribute", "cookie"),
]  # fmt: skip


def json_bodies(rng: random.Random) -> list[bytes]:
    member = {"phone": PHONE, "name": "x"}
    variants: list[object] = [
        {}, [], None, 1, "s", {"phone": None}, {"phone": ["a"]}, {"phone": {"$gt": ""}},
        {"phone": rng.choice(ODD_DIGITS)}, {**member, "name": rng.choice(BAD_TEXT)},
        {"receipt_no": "R\x00", "phone": PHONE, "store": "DEMO01", "assistant": "A001",
         "amount": rng.choice(["1_000", "１０", "𝟏𝟎", "1e999999", "NaN", "9" * 400, True]),
         "at": rng.choice(["2026-11-01T10:00:00+08:00", "２０２６-11-01", "9" * 50]),
         "items": []},
        {"status": rng.choice(["approved", "\x00", "x" * 10000, 1])},
        {"member": PHONE, "occasion": "birthday", "note": rng.choice(BAD_TEXT)},
        {"points": 10 ** 40, "phone": PHONE, "reason": "r", "key": "k"},
        {"text": "hi", "store": "DEMO01", "items": [{"qty": "２"}]},
    ]  # fmt: skip
    out = [json.dumps(v, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
           for v in variants]  # fmt: skip
    out += [b"{", b'{"a":', b"\xff\xfe{}", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 50_000,
            b'{"a": 1' + b"0" * 5000 + b"}", b'{"a":"\\ud800"}', b'{"a":"\\u0000"}',
            b'\xef\xbb\xbf{"phone": "+86138\\u0000"}', b"x" * 70_000, b""]  # fmt: skip
    return out


def form_bodies() -> list[bytes]:
    return [
        b"From=\xff&Body=hi", b"From=%FF&Body=hi", b"From=%2B8613800138001&Body=a%00b",
        b"code=A001&secret=wrong", b"code=%00&secret=%00", b"secret=" + b"a" * 70_000,
        b"&".join(b"f%d=1" % i for i in range(500)), b"csrf_token=x&next=/staff/%00",
        b"MessageSid=SM1&MessageStatus=delivered", b"q=%E2%91%A0&csrf_token=",
        b"=&&==&%", b"Body=\xe4\xb8", b"",
    ]  # fmt: skip


def xml_bodies() -> list[bytes]:
    return [
        b"<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content>\xe7\xa7\xaf\xe5\x88\x86</Content><MsgId>1</MsgId></xml>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;&a;</xml>',
        b"<xml><Encrypt>not base64!</Encrypt></xml>", b"<xml>&#0;</xml>", b"<xml", b"\xff\xfe<",
        b"<xml><CreateTime>\xd9\xa1</CreateTime></xml>", b"<xml>" + b"<a>" * 5000 + b"</xml>",
    ]  # fmt: skip


def auth_headers(kind: str, rng: random.Random, authed: bool) -> dict[str, str]:
    if authed and kind in ("key", "token"):  # a valid key or token: the body is what is bad
        return {"Authorization": f"Bearer {API_KEY if kind == 'key' else DEMO_TOKEN}"}
    if kind in ("key", "metrics"):
        value = rng.choice(BAD_KEYS)
        return {"Authorization": value} if value else {}
    if kind == "token":
        return {"Authorization": rng.choice(BAD_TOKENS + BAD_KEYS[1:])}
    if kind == "twilio":
        return rng.choice([{}, {"X-Twilio-Signature": "bad"}, {"X-Twilio-Signature": "="}])
    if kind == "cookie":
        cookie = rng.choice(["memberbot_staff=forged", "memberbot_staff=" + "a" * 4000, "=;;="])
        return rng.choice([{}, {"Cookie": cookie}])
    return {}


def query_for(kind: str, rng: random.Random) -> str:
    if kind == "wechat":
        ts = rng.choice(["1000000000", str(int(time.time())), "²", "9" * 40, "", "-1"])
        # a captured URL: rightly signed with the token, but stale or plain with a key set
        captured = hashlib.sha1("".join(sorted(["wechat-token", ts, "n"])).encode()).hexdigest()
        sig = rng.choice(["", "0" * 40, "zz", "%00", captured])
        extra = rng.choice(["", "&encrypt_type=aes&msg_signature=00", "&encrypt_type=aes",
                            "&echostr=%FF", "&openid=%00"])  # fmt: skip
        return f"signature={sig}&timestamp={ts}&nonce=n{extra}"
    if kind == "push":
        return rng.choice(["", "token=", "token=wrong", "token=%00", "token=%FF"])
    if rng.random() < 0.4:
        return ""
    return rng.choice(["status=approved", "status=%00", "status=%FF", "status=a&status=x",
                       "store=%E2%91%A0", "store=DEMO01", "lang=en%00", "next=//evil",
                       "start=2026-13-45", "end=２０２６-01-01", "sent=new&occasion=%0A",
                       "a=" + "b" * 8000, "redistributed=%D9%A1"])  # fmt: skip


def fill(path: str, rng: random.Random) -> str:
    return (path.replace("{id}", rng.choice(ODD_DIGITS[:6] + TRAVERSAL + ["1", "%00"]))
            .replace("{phone}", rng.choice([PHONE.replace("+", "%2B"), "%D9%A1" * 11, "%00",
                                            "138%FF", "+8613800138002"] + TRAVERSAL))
            .replace("{code}", rng.choice(["DEMO", "%00", "%FF", "a" * 300] + TRAVERSAL))
            )  # fmt: skip


RAW_HEADERS = [b"Authorization: Bearer \xff\xfe", b"Cookie: memberbot_staff=\xff",
               b"X-Twilio-Signature: \xc3\x28", b"Authorization: \x00"]  # fmt: skip
CONTENT_TYPES = ["multipart/form-data", "text/plain", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1"]  # fmt: skip


def build_requests(n: int, seed: int, *, authed: bool = False) -> list[tuple]:
    """(kind, method, url-path-and-query, headers, body) — kind "http" or "raw".
    `authed`: the operator endpoints get a valid key (and the greeting/inbox ones a
    valid assistant token); only their bodies, paths and queries are hostile."""
    rng = random.Random(seed)
    forms, xmls = form_bodies(), xml_bodies()
    out: list[tuple] = []
    while len(out) < n:
        for method, template, auth in ENDPOINTS:
            if authed and auth not in ("key", "token"):
                continue
            jsons = json_bodies(rng)
            path = fill(template, rng)
            query = query_for(auth, rng)
            target = path + ("?" + query if query else "")
            headers = auth_headers(auth, rng, authed)
            body = b""
            if method == "POST":
                pick = rng.random()
                if auth in ("twilio", "form", "cookie") or pick < 0.2:
                    body, ctype = rng.choice(forms), "application/x-www-form-urlencoded"
                elif auth == "wechat" or pick < 0.3:
                    body, ctype = rng.choice(xmls), "text/xml"
                else:
                    body, ctype = rng.choice(jsons), "application/json"
                headers["Content-Type"] = rng.choice([ctype] * 6 + CONTENT_TYPES)
            out.append(("http", method, target, headers, body))
            if rng.random() < 0.25:  # the same request with bytes aiohttp will not send
                raw_path = rng.choice(
                    [target.encode(), path.encode() + b"/\xff", b"/api/members/\xd9\xa1"]
                )
                out.append(("raw", method, raw_path, rng.choice(RAW_HEADERS), body))
    return out[:max(n, len(out))]


async def send_raw(host: str, port: int, method: str, target: bytes, header: bytes,
                   body: bytes) -> tuple[int, bytes]:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\nContent-Length: %d\r\n\r\n"
    try:
        writer.write(head % (method.encode(), target, header, len(body)) + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


async def fire(base: str, requests: list[tuple], concurrency: int) -> tuple[Counter, list, int]:
    """Send them all; (answers by status, the 5xx/traceback ones, bodies with a traceback)."""
    url = URL(base)
    statuses: Counter = Counter()
    problems: list[str] = []
    traced = 0
    gate = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:

        async def one(req: tuple) -> None:
            kind, method, target, headers, body = req
            async with gate:
                try:
                    if kind == "raw":
                        status, text = await send_raw(
                            url.host, url.port, method, target, headers, body
                        )
                    else:
                        full = URL(base + target, encoded=True)
                        async with http.request(method, full, headers=headers, data=body,
                                                allow_redirects=False) as resp:  # fmt: skip
                            status, text = resp.status, await resp.read()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    statuses[f"conn:{type(exc).__name__}"] += 1
                    return
            nonlocal traced
            statuses[status] += 1
            traced += b"Traceback" in text
            if b"Traceback" in text or status >= 500:
                problems.append(f"{status} {method} {target!r}: {text[:200]!r}")

        await asyncio.gather(*(one(r) for r in requests))
    return statuses, problems, traced


async def snapshot(url: str) -> dict[str, tuple[int, str]]:
    from sqlalchemy import text

    from models.db import make_engine
    from models.tables.schema import METADATA

    engine = make_engine(url)
    out = {}
    async with engine.connect() as conn:
        for table in METADATA.sorted_tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table.name}" ORDER BY 1'))).all()
            digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
            out[table.name] = (len(rows), digest[:16])
    await engine.dispose()
    return out


async def reset_pg(url: str) -> None:
    import asyncpg

    base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def start(config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("MEMBERBOT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--demo", "--config", str(config)],
        cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (http://\S+)", line)
    if not m:
        proc.kill()
        sys.exit(f"hostile: the server did not start: {line!r}; see {log}")
    return proc, m.group(1)


def report(title: str, statuses: Counter, problems: list[str], traced: int) -> int:
    """Print one phase's counts; return its number of 5xx answers + traceback bodies."""
    fivexx = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    print(f"{title}: {sum(statuses.values())} requests")
    print("  by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)))
    print(f"  5xx: {fivexx}; bodies with Traceback: {traced}")
    for line in problems[:20]:
        print("    " + line)
    return fivexx + traced


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", help="postgresql+asyncpg://… (dropped and created)")
    p.add_argument("--requests", type=int, default=10_000, help="unauthenticated ones")
    p.add_argument("--authenticated", type=int, default=3_000,
                   help="then this many with a valid key or token and hostile bodies")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--allow-table", action="append", default=[])
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    url = args.database_url or f"sqlite+aiosqlite:///{work / 'memberbot.db'}"
    if args.database_url:
        await reset_pg(url)
    config = work / "config.toml"
    config.write_text(CONFIG.replace("{url}", url), encoding="utf-8")
    log = work / "server.log"
    proc, base = start(config, log)
    try:
        await asyncio.sleep(1.0)  # the sender's first pass over the outbox
        before = await snapshot(url)
        started = time.monotonic()
        unauth = await fire(base, build_requests(args.requests, args.seed), args.concurrency)
        elapsed = time.monotonic() - started
        after = await snapshot(url)
        authed = await fire(
            base, build_requests(args.authenticated, args.seed + 1, authed=True), args.concurrency
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    engine = "postgresql" if args.database_url else "sqlite"
    bad = report(f"unauthenticated/invalid on {engine} ({elapsed:.1f} s)", *unauth)
    allowed = {*args.allow_table, *ATTEMPT_TABLES}
    changed = sorted(t for t in before if before[t] != after.get(t) and t not in allowed)
    for t in sorted(ATTEMPT_TABLES & before.keys()):
        if before[t] != after.get(t):
            print(f"  {t}: refused sign-ins recorded for the limit (allowed)")
    print(f"  tables changed: {', '.join(changed) or 'none'} (of {len(before)} tables, "
          f"{sum(n for n, _ in before.values())} rows)")  # fmt: skip
    if args.authenticated:
        bad += report(f"valid key/token, hostile body/path/query on {engine}", *authed)
    in_log = log.read_text(encoding="utf-8", errors="replace").count("Traceback")
    print(f"tracebacks in the server log: {in_log}" + (f" (see {log})" if in_log else ""))
    if bad or in_log or changed:
        return 1
    shutil.rmtree(work, ignore_errors=True)  # kept for a look when something was wrong
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
