"""The reliability harness: the deployment of `tests.reliability.stack` (two replicas,
PgBouncer, haproxy) with the outbox sender on, pointed at the fake provider process of
`tests.reliability.provider`, and what the scenarios (`tests.reliability.scenarios`)
need to drive and read it: the operator API through haproxy, WeChat messages straight
to a replica, messages put in the outbox with `models.outbox.states.enqueue`, the
database read directly, the circuit-breaker gauge of every replica's `/metrics`.

Used by the short mode (tests/reliability/test_*.py) and the long one (bench/soak.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from aiohttp import ClientSession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import make_engine, session_factory, transaction
from models.outbox.states import enqueue
from models.types import utcnow
from scheduler.send.sender import CALL_TIMEOUT
from tests.fakes import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.payloads import TWILIO_NUMBER, aes, decrypt_reply, reply_fields, wechat_settings
from tests.payloads import wechat_text as wechat_xml
from tests.reliability.provider import Provider
from tests.reliability.stack import Stack

API_KEY = "soak-api-key-0123456789"
STORE, ASSISTANT = "S001", "A001"

OUTBOX = {
    "poll_interval": 0.5,
    "retry_backoff": 0.5,
    "claim_timeout": 30,
    "rate_sms": 20,
    "concurrency": 16,
    "batch_size": 100,
    "max_attempts": 8,
}
"""The sender's settings in both modes: short timings so that a claim left by a killed
replica expires, and a backoff doubles, within the run."""


def claim_limit(outbox: dict = OUTBOX) -> int:
    """The most messages one pass of one sender claims on a channel (docs/scheduler.md
    "Claims are sized …", `Sender._claim_limit`): what a SIGKILL can leave in `sending`
    at once."""
    half = outbox["claim_timeout"] / 2
    bounds = [outbox["batch_size"], int(outbox["concurrency"] * half / CALL_TIMEOUT)]
    if outbox["rate_sms"]:
        bounds.append(int(outbox["rate_sms"] * half))
    return min(bounds)


def settings(provider_url: str) -> dict:
    """The replicas' config.toml over the stack's own (database, server)."""
    return {
        "api": {"keys": [API_KEY]},
        "wechat": wechat_settings(api_base_url=provider_url),
        "sms": {
            "provider": "twilio",
            "twilio": {
                "account_sid": TWILIO_ACCOUNT_SID,
                "auth_token": TWILIO_AUTH_TOKEN,
                "from_number": TWILIO_NUMBER,
                "api_base_url": provider_url,
            },
        },
        # the harness queues the messages itself; no daily run adds its own
        "scheduler": {"enabled": False},
        # any hour of the day (CI runs at night), and no weekly cap in the way
        "messaging": {"send_window": "00:00-24:00", "weekly_cap": 100},
        "outbox": OUTBOX,
    }


async def recreate_database(admin_url: str, dbname: str, *, drop_only: bool = False) -> None:
    """Drop `dbname` on the server of `admin_url` (postgresql://…/postgres) and create it
    again, empty (or only drop it)."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()


def phone(tag: int, n: int) -> str:
    """A mainland mobile number, distinct per (tag, n)."""
    return f"+86139{tag:02d}{n:06d}"


@dataclass
class BreakerWatch:
    """Polls every replica's `/metrics` for `memberbot_breaker_open` (in a thread) and keeps
    its changes: (monotonic time, replica port, channel, open)."""

    ports: list[int]
    interval: float = 0.2
    changes: list[tuple[float, int, str, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> BreakerWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last: dict[tuple[int, str], bool] = {}
        while not self._stop.is_set():
            for port in self.ports:
                for channel, is_open in breaker_gauge(port).items():
                    if last.get((port, channel), False) != is_open:
                        last[port, channel] = is_open
                        self.changes.append((time.monotonic(), port, channel, is_open))
            self._stop.wait(self.interval)

    def periods(self, channel: str) -> list[tuple[int, float, float | None]]:
        """(port, opened, closed or None) of each time a breaker of `channel` was open."""
        out: list[tuple[int, float, float | None]] = []
        opened: dict[int, float] = {}
        for at, port, ch, is_open in self.changes:
            if ch != channel:
                continue
            if is_open:
                opened[port] = at
            elif port in opened:
                out.append((port, opened.pop(port), at))
        out += [(port, at, None) for port, at in opened.items()]
        return sorted(out, key=lambda p: p[1])


def breaker_gauge(port: int) -> dict[str, bool]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            body = resp.read().decode()
    except OSError:  # killed or starting
        return {}
    gauge = {}
    for line in body.splitlines():
        if line.startswith("memberbot_breaker_open{"):
            labels, value = line.rsplit(" ", 1)
            gauge[labels.split('channel="', 1)[1].split('"', 1)[0]] = float(value) > 0
    return gauge


class Soak:
    """A running deployment with the fake provider (see the module). Start with
    `start()` (blocking: processes), then `await open()` in the event loop."""

    def __init__(self, workdir: Path, *, pg_admin_url: str, dbname: str):
        self.workdir = workdir
        self.provider = Provider(workdir)
        self.stack = Stack(workdir, pg_admin_url=pg_admin_url, dbname=dbname)
        self.db_url = (
            pg_admin_url.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
            + f"/{dbname}"
        )
        self.engine: AsyncEngine | None = None
        self.http: ClientSession | None = None

    def start(self, replicas: int = 2) -> Soak:
        self.provider.start()
        self.stack.settings = settings(self.provider.url)
        self.stack.start(replicas=replicas)
        return self

    def stop(self) -> None:
        self.stack.stop()
        self.provider.stop()

    def tracebacks(self) -> str:
        """The end of the output of every process that printed a traceback."""
        procs = [*self.stack.replicas, self.stack.haproxy, self.stack.pgbouncer]
        return "".join(
            f"--- {p.name}\n{p.output()[-4000:]}\n"
            for p in [*procs, self.provider.process]
            if p is not None and "Traceback" in p.output()
        )

    async def open(self) -> None:
        self.engine = make_engine(self.db_url, pool_size=4)
        self.http = ClientSession(base_url=self.stack.url)
        status, _ = await self.api("POST", "/api/stores", {"code": STORE, "name": "一店"})
        assert status in (200, 201), status
        body = {"code": ASSISTANT, "name": "王丽", "store": STORE}
        status, _ = await self.api("POST", "/api/assistants", body)
        assert status in (200, 201), status

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.engine is not None:
            await self.engine.dispose()

    # ------------------------------------------------------------------ driving it

    async def api(self, method: str, path: str, body=None) -> tuple[int, object]:
        """The operator API through haproxy: (status, JSON or text)."""
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with self.http.request(method, path, json=body, headers=headers) as resp:
            is_json = resp.content_type == "application/json"
            return resp.status, (await resp.json() if is_json else await resp.text())

    async def member(self, number: str, *, openid: str | None = None, spend: int = 0) -> None:
        """A member of store S001 (with a WeChat openid), who bought for `spend` yuan."""
        body = {"phone": number, "name": "会员", "store": STORE, "assistant": ASSISTANT}
        if openid:
            body["wechat_openid"] = openid
        status, answer = await self.api("POST", "/api/members", body)
        assert status in (200, 201), answer
        if spend:
            item = {"sku": "K1", "name": "大衣", "category": "coats", "qty": 1, "amount": spend}
            purchase = {
                "receipt_no": f"R{number[1:]}", "phone": number, "store": STORE,
                "assistant": ASSISTANT, "amount": str(spend), "items": [item],
                "at": (utcnow() - timedelta(days=1)).isoformat(),
            }  # fmt: skip
            status, answer = await self.api("POST", "/api/purchases", purchase)
            assert status in (200, 201), answer

    async def wechat(self, url: str, openid: str, content: str, msg_id: str) -> str:
        """A WeChat text message (signed and encrypted) posted to `url` (a replica or
        haproxy); the text of the bot's passive reply ("" for none)."""
        query, body = aes(wechat_xml(openid, content, msg_id=msg_id))
        async with self.http.post(url + "/wechat", params=query, data=body) as resp:
            answer = await resp.text()
            assert resp.status == 200, answer
        if not answer or answer == "success":
            return ""
        return reply_fields(decrypt_reply(answer)).get("Content", "")

    async def enqueue(self, numbers: list[str], count: int, tag: str) -> list[int]:
        """`count` SMS service notices to `numbers` (round robin), due now; the text
        carries `<tag>#<n>` so the fake's log names each message."""
        now = utcnow()
        ids: list[int] = []
        by_phone = await self.member_ids(numbers)
        async with transaction(session_factory(self.engine)) as session:
            for n in range(count):
                number = numbers[n % len(numbers)]
                msg = await enqueue(
                    session, member_id=by_phone[number], kind="points_notice",
                    occasion=f"{tag}#{n}", planned_on=now.date(),
                    text=f"您的积分已更新 {tag}#{n}。回复TD退订", channel="sms", via="twilio",
                    address=number, send_after=now, now=now,
                )  # fmt: skip
                ids.append(msg.id)
        return ids

    # ------------------------------------------------------------------ reading it

    async def rows(self, sql: str, **params) -> list[tuple]:
        async with self.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]

    async def member_ids(self, numbers: list[str]) -> dict[str, int]:
        rows = await self.rows("SELECT phone, id FROM members WHERE phone = ANY(:p)", p=numbers)
        return dict(rows)

    async def statuses(self, ids: list[int]) -> dict[str, int]:
        rows = await self.rows(
            "SELECT status, count(*) FROM outbox WHERE id = ANY(:ids) GROUP BY status", ids=ids
        )
        return dict(rows)

    async def wait_statuses(
        self, ids: list[int], final: set[str], *, within: float
    ) -> dict[str, int]:
        """Until every message of `ids` is in one of `final`; their statuses."""
        deadline = time.monotonic() + within
        while True:
            counts = await self.statuses(ids)
            if sum(v for k, v in counts.items() if k in final) == len(ids):
                return counts
            if time.monotonic() > deadline:
                raise TimeoutError(f"messages not {sorted(final)} after {within:.0f} s: {counts}")
            await asyncio.sleep(0.5)

    async def events(self, ids: list[int]) -> list[tuple[int, str, str, float, str | None]]:
        """(message, from, to, Unix time, reason) of the messages' history, in order."""
        return await self.rows(
            "SELECT message_id, from_status, to_status, extract(epoch FROM at), reason "
            "FROM outbox_events WHERE message_id = ANY(:ids) ORDER BY at, id",
            ids=ids,
        )
