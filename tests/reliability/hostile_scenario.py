"""The hostile run on the deployment (`tests.reliability.stack`), short in
test_hostile_stack.py and long in `bench/hostile.py`:

1. seed through the load balancer with the key: a store, a manager (its token, and a
   console session signed in with its password), a member and a purchase; two WeChat
   safe-mode messages (one opens an inbox conversation; their signed requests are kept
   for replays);
2. fingerprint every table (`hostile_run.snapshot`, directly on PostgreSQL);
3. fire the unauthenticated / badly signed / malformed requests (`hostile.build_requests`),
   the same with a valid key, token or console session and hostile bodies, paths and
   queries, and schemathesis over /api/openapi.json without credentials;
4. fingerprint again: nothing may differ but the refused sign-ins (`ATTEMPT_TABLES`);
5. schemathesis with the key (operator routes) and with the assistant's token (the
   token routes): these may create rows; every check but `positive_data_acceptance`.
Every answer of 3 and 5: no 5xx, no traceback in a body; none in the replicas' logs.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession

from bot.app import create_app
from models.settings.load import load_settings
from tests.fakes import TWILIO_AUTH_TOKEN, WECHAT_APP_ID
from tests.payloads import aes, wechat_settings, wechat_text
from tests.reliability.hostile import ATTEMPT_TABLES, Targets, build_requests, routes_of
from tests.reliability.hostile_run import (
    Fired,
    Fuzzed,
    changed_tables,
    fire,
    schemathesis,
    snapshot,
)
from tests.reliability.stack import Stack

API_KEY = "hostile-operator-key-0123456789"
PUSH_TOKEN = "hostile-aliyun-push-token"
STAFF_PASSWORD = "hostile-staff-password"
SETTINGS = {
    "api": {"keys": [API_KEY]},
    "wechat": wechat_settings(),
    "sms": {
        "provider": "console",
        "twilio": {"auth_token": TWILIO_AUTH_TOKEN},
        "aliyun": {"push_token": PUSH_TOKEN},
    },
    "metrics": {"token": "hostile-metrics-token"},
    "scheduler": {"enabled": False},
    "outbox": {"poll_interval": 3600},
}


@dataclass
class Sizes:
    requests: int = 3_000
    """Unauthenticated / badly signed / malformed (at least)."""
    authed: int = 800
    """With a valid key or token, hostile bodies, paths and queries (at least)."""
    examples: int = 3
    """schemathesis `--max-examples` per operation and run."""
    concurrency: int = 16
    seed: int = 14


@dataclass
class Report:
    unauthenticated: Fired
    authed: Fired
    fuzz_unauthenticated: Fuzzed
    fuzz_key: Fuzzed | None = None
    fuzz_token: Fuzzed | None = None
    changed: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    tables: int = 0
    rows: int = 0
    log_tracebacks: dict[str, int] = field(default_factory=dict)
    routes: list[tuple[str, str, str]] = field(default_factory=list)
    """The app's routes the requests aimed at (`hostile.routes_of`)."""

    def fuzzed(self) -> list[Fuzzed]:
        return [f for f in (self.fuzz_unauthenticated, self.fuzz_key, self.fuzz_token) if f]

    @property
    def problems(self) -> list[str]:
        out = [*self.unauthenticated.problems, *self.authed.problems]
        out += [f"schemathesis exit {f.exit_code}:\n{f.output}" for f in self.fuzzed()
                if f.failed]  # fmt: skip
        out += [f"rows changed in {t}" for t in self.changed]
        out += [f"{n} tracebacks in {name}'s log" for name, n in self.log_tracebacks.items() if n]
        return out

    def lines(self) -> list[str]:
        return [
            f"unauthenticated/badly signed/malformed: {self.unauthenticated.line()}",
            f"valid key/token/session, hostile body/path/query: {self.authed.line()}",
            f"schemathesis, no credential: {self.fuzz_unauthenticated.line()}",
            f"tables changed by those: {', '.join(self.changed) or 'none'} (of {self.tables} "
            f"tables, {self.rows} rows); refused sign-ins recorded in: "
            f"{', '.join(self.attempts) or 'none'}",
            *(
                f"schemathesis, {name}: {f.line()}; exit {f.exit_code}"
                for name, f in (("api key", self.fuzz_key), ("assistant token", self.fuzz_token))
                if f
            ),  # fmt: skip
            f"5xx: {self.unauthenticated.server_errors + self.authed.server_errors}; "
            f"tracebacks in bodies: {self.unauthenticated.traced + self.authed.traced}, "
            f"in the replicas' logs: {sum(self.log_tracebacks.values())}",
        ]


def database_url(stack: Stack) -> str:
    """The deployment's database, directly (not through PgBouncer)."""
    base = stack.pg_admin_url.replace("postgresql://", "postgresql+asyncpg://")
    return base.rsplit("/", 1)[0] + "/" + stack.dbname


async def seed(stack: Stack) -> Targets:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    targets = Targets(routes=[], api_key=API_KEY, token="")
    async with ClientSession(base_url=stack.url, headers=auth) as http:

        async def post(path: str, body: dict) -> dict:
            async with http.post(path, json=body) as resp:
                assert resp.status in (200, 201), await resp.text()
                return await resp.json()

        await post("/api/stores", {"code": targets.store, "name": "一店", "city": "上海"})
        assistant = {"code": "A001", "name": "王丽", "store": targets.store,
                     "role": "manager", "password": STAFF_PASSWORD}  # fmt: skip
        staff = await post("/api/assistants", assistant)
        member = {"phone": targets.phone, "store": targets.store, "assistant": "A001"}
        await post("/api/members", member)
        item = {"sku": "K1", "name": "衬衫", "category": "shirts", "qty": 1, "amount": "350.00"}
        purchase = {"receipt_no": "H-1", "phone": targets.phone, "store": targets.store,
                    "assistant": "A001", "amount": "350.00", "at": "2026-03-10T14:00:00+08:00",
                    "items": [item]}  # fmt: skip
        await post("/api/purchases", purchase)
        captured = []
        for text in ("积分", "人工"):  # the second opens a conversation in the inbox
            query, body = aes(wechat_text("o_hostile", text))
            async with http.post("/wechat", params=query, data=body) as resp:
                assert resp.status == 200, await resp.text()
            captured.append((query, body))
        cookie, csrf = await sign_in(http, "A001")
    settings = load_settings(stack.workdir / "config.toml", environ={})
    return Targets(
        routes=routes_of(create_app(settings)),
        api_key=API_KEY,
        token=staff["token"],
        public_url=stack.url,
        push_token=PUSH_TOKEN,
        app_id=WECHAT_APP_ID,
        captured=captured,
        cookie=cookie,
        csrf=csrf,
    )


async def sign_in(http: ClientSession, code: str) -> tuple[str, str]:
    """A console session: (its cookie, its CSRF token)."""
    form = {"code": code, "secret": STAFF_PASSWORD}
    async with http.post("/staff/signin", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        cookie = resp.cookies["memberbot_staff"].value
    headers = {"Cookie": f"memberbot_staff={cookie}"}
    async with http.get("/staff/", headers=headers, allow_redirects=False) as resp:
        assert resp.status == 200, resp.status
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text()).group(1)
    return cookie, csrf


async def run(stack: Stack, workdir: Path, sizes: Sizes) -> Report:
    targets = await seed(stack)
    await asyncio.sleep(2)  # the sender's pass over what the seeding queued
    url = database_url(stack)
    before = await snapshot(url)
    s = sizes
    unauth = await fire(stack.url, build_requests(targets, s.requests, s.seed), s.concurrency)
    authed_requests = build_requests(targets, s.authed, s.seed + 1, authed=True)
    authed = await fire(stack.url, authed_requests, s.concurrency)
    fuzz_unauth = await asyncio.to_thread(
        schemathesis, stack.url, workdir, header=None, max_examples=s.examples, seed=s.seed
    )
    after = await snapshot(url)
    report = Report(unauth, authed, fuzz_unauth, tables=len(before), routes=targets.routes)
    report.rows = sum(n for n, _ in before.values())
    report.changed = changed_tables(before, after, ATTEMPT_TABLES)
    report.attempts = sorted(set(changed_tables(before, after)) & ATTEMPT_TABLES)
    token_paths = sorted({p for _m, p, kind in targets.routes if kind == "token"})
    only_token = "^(" + "|".join(re.escape(p) for p in token_paths) + ")$"
    report.fuzz_key = await asyncio.to_thread(
        schemathesis, stack.url, workdir, header=f"Authorization: Bearer {API_KEY}",
        max_examples=s.examples, seed=s.seed + 2, exclude_regex=only_token,
    )  # fmt: skip
    report.fuzz_token = await asyncio.to_thread(
        schemathesis, stack.url, workdir, header=f"Authorization: Bearer {targets.token}",
        max_examples=s.examples, seed=s.seed + 3, include_regex=only_token,
    )  # fmt: skip
    report.log_tracebacks = {r.name: r.output().count("Traceback") for r in stack.replicas}
    return report
