"""deploy/ for real (short mode): two `memberbot serve` replicas on PostgreSQL through
PgBouncer (deploy/pgbouncer.ini, transaction pooling, `database.pgbouncer = true`)
behind haproxy (deploy/haproxy.cfg), on loopback ports (tests/reliability/stack.py).

Requests through haproxy reach both replicas; a replica killed with SIGKILL costs no
request (haproxy sends a refused connection to the other one) and its health check
takes it out; the operator API, a WeChat message signed and encrypted with wechatpy and
an SMS signed for `server.public_url` work through the load balancer and PgBouncer.
Needs PostgreSQL (MEMBERBOT_TEST_DATABASE_URL) and Debian's haproxy and pgbouncer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession

from tests.conftest import API_KEY
from tests.fakes import TWILIO_AUTH_TOKEN
from tests.payloads import aes, decrypt_reply, reply_fields, sms, twilio_signature, wechat_settings
from tests.payloads import wechat_text as wechat_xml
from tests.reliability.stack import Stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE = "+8613800138000"


@pytest.fixture
def stack(tmp_path: Path, deploy_db: tuple[str, str]) -> Iterator[Stack]:
    admin_url, dbname = deploy_db
    settings = {
        "api": {"keys": [API_KEY]},
        "wechat": wechat_settings(),
        "sms": {"provider": "console", "twilio": {"auth_token": TWILIO_AUTH_TOKEN}},
    }
    with Stack(tmp_path, pg_admin_url=admin_url, dbname=dbname, settings=settings) as running:
        try:
            running.start(replicas=2)
            yield running
        finally:
            running.stop()
            for proc in [*running.replicas, running.haproxy, running.pgbouncer]:
                if proc is not None and "Traceback" in proc.output():
                    print(f"--- {proc.name}\n{proc.output()[-4000:]}")


async def _api(http: ClientSession, method: str, path: str, body=None) -> tuple[int, object]:
    async with http.request(method, path, json=body, headers=AUTH) as resp:
        assert resp.headers.get("X-Request-Id"), "haproxy sets a request id"
        data = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, data


async def _wechat(http: ClientSession, openid: str, text: str) -> str:
    query, body = aes(wechat_xml(openid, text))
    async with http.post("/wechat", params=query, data=body) as resp:
        answer = await resp.text()
        assert resp.status == 200, answer
    return reply_fields(decrypt_reply(answer))["Content"]


async def _sms(http: ClientSession, stack: Stack, text: str) -> str:
    form = sms(PHONE, text)
    # Twilio signs the public URL it called: the load balancer's (server.public_url).
    signature = twilio_signature(f"{stack.url}/sms/twilio", form)
    headers = {"X-Twilio-Signature": signature}
    async with http.post("/sms/twilio", data=form, headers=headers) as resp:
        answer = await resp.text()
        assert resp.status == 200, answer
    return answer


def _served(stack: Stack) -> dict[str, int]:
    """Requests each replica has answered, as haproxy counts them."""
    return {name: int(row["stot"]) for name, row in stack.server_stats().items()}


async def _traffic(http: ClientSession, stack: Stack, n: int) -> None:
    """`n` rounds of an API read, a WeChat message and a health check."""
    for i in range(n):
        status, body = await _api(http, "GET", f"/api/members/{PHONE.replace('+', '%2B')}")
        assert status == 200, body
        assert "积分" in await _wechat(http, f"o_lb_{i}", "积分")
        async with http.get("/healthz") as resp:
            assert resp.status == 200


async def test_replicas_behind_haproxy_and_pgbouncer(stack: Stack):
    first, second = stack.replicas
    async with ClientSession(base_url=stack.url) as http:
        # the operator API, through haproxy and PgBouncer
        store = {"code": "S001", "name": "一店", "city": "上海"}
        assert (await _api(http, "POST", "/api/stores", store))[0] == 201
        assistant = {"code": "A001", "name": "王丽", "store": "S001"}
        assert (await _api(http, "POST", "/api/assistants", assistant))[0] == 201
        assert (await _api(http, "POST", "/api/members", {"phone": PHONE}))[0] in (200, 201)
        item = {"sku": "K1", "name": "衬衫", "category": "shirts", "qty": 1, "amount": "350.00"}
        purchase = {
            "receipt_no": "LB-1", "phone": PHONE, "store": "S001", "assistant": "A001",
            "amount": "350.00", "at": "2026-03-10T14:00:00+08:00", "items": [item],
        }  # fmt: skip
        for _ in range(3):  # idempotent across replicas: recorded once
            assert (await _api(http, "POST", "/api/purchases", purchase))[0] in (200, 201)
        status, member = await _api(http, "GET", f"/api/members/{PHONE.replace('+', '%2B')}")
        assert status == 200 and member["points"] == 350, member

        # request ids are haproxy's, one per request
        ids = set()
        for _ in range(6):
            async with http.get("/healthz", headers={"X-Request-Id": "spoofed"}) as resp:
                assert resp.status == 200
                ids.add(resp.headers["X-Request-Id"])
        assert len(ids) == 6 and "spoofed" not in ids

        # the webhooks: WeChat (wechatpy-signed, encrypted) and Twilio (signed for public_url)
        await _traffic(http, stack, 4)
        assert "350" in await _sms(http, stack, "积分")
        served = _served(stack)
        assert served[first.server] > 0 and served[second.server] > 0, served

        # SIGKILL one replica: the requests right after it still succeed (a refused
        # connection is sent to the other replica), then the health check takes it out
        first.kill()
        await _traffic(http, stack, 3)
        stack.wait_state(first, "DOWN")
        before = _served(stack)
        await _traffic(http, stack, 4)
        after = _served(stack)
        assert after[first.server] == before[first.server]
        assert after[second.server] > before[second.server]

        # back in rotation once it is up again
        stack.replicas.remove(first)
        again = stack.start_replica(first.port)
        stack.wait_healthy(again)
        stack.wait_state(again, "UP")
        await _traffic(http, stack, 4)
        assert _served(stack)[first.server] > after[first.server]
