"""`GET /metrics` (bot.metrics), the request id and the access log (bot.access)."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.logsetup import configure_logging
from bot.metrics import endpoint_group
from models.db import session_factory, transaction
from models.outbox.states import FAILED, QUEUED, SUPPRESSED
from models.settings.sections import LoggingSettings
from models.tables.inbox import Conversation
from models.tables.outbox import OutboxMessage, PlanRun
from models.types import utcnow
from tests.conftest import API_KEY
from tests.factories import make_member

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def scrape(client, headers=None) -> dict:
    resp = await client.get("/metrics", headers=headers or {})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    return samples(await resp.text())


async def test_requests_are_counted_by_endpoint_and_status(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/members/+8613800138000")).status == 401
    assert (await client.get("/api/members/+8613800138000", headers=AUTH)).status == 404
    found = await scrape(client)
    total = "memberbot_http_requests_total"
    assert found[(total, (("endpoint", "healthz"), ("status", "200")))] == 1
    assert found[(total, (("endpoint", "api"), ("status", "401")))] == 1
    assert found[(total, (("endpoint", "api"), ("status", "404")))] == 1
    assert found[("memberbot_http_request_seconds_count", (("endpoint", "api"),))] == 2
    assert ("memberbot_db_pool_in_use", (("pool", "sessions"),)) in found


def test_endpoint_groups_are_a_small_fixed_set():
    assert endpoint_group("/wechat") == "wechat"
    assert endpoint_group("/sms/twilio") == "twilio"
    assert endpoint_group("/sms/twilio/status") == "twilio_status"
    assert endpoint_group("/api/members/+86138") == "api"
    assert endpoint_group("/staff/members/1") == "staff"
    assert endpoint_group("/wechatx") == "other"
    assert endpoint_group("/../../etc/passwd") == "other"


async def test_outbox_and_daily_run_figures_come_from_the_database(
    aiohttp_client, settings, engine
):
    now = utcnow()
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        member = await make_member(session)

        def message(n: int, status: str, **extra) -> OutboxMessage:
            fields = dict(
                member_id=member.id, kind="birthday", occasion=f"o{n}",
                planned_on=date(2026, 12, 2), status=status, send_after=now, channel="sms",
                via="twilio",
            )  # fmt: skip
            fields.update(extra)
            return OutboxMessage(**fields)

        session.add(message(1, QUEUED, send_after=now - timedelta(minutes=10)))
        session.add(message(2, QUEUED, send_after=now + timedelta(hours=1), kind="holiday"))
        session.add(message(3, FAILED, attempts=8, error_code="30003"))
        session.add(message(4, SUPPRESSED, reason="weekly cap: 2 in 7 days"))
        session.add(message(5, SUPPRESSED, reason="stopped"))
        session.add(Conversation(thread_key=f"m:{member.id}", member_id=member.id,
                                 channel="wechat", address="o_1", status="open",
                                 opened_at=now, updated_at=now))  # fmt: skip
        start = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
        session.add(PlanRun(day=date(2026, 12, 2), started_at=start,
                            finished_at=start + timedelta(seconds=42), planned=3, suppressed=2))
    client = await aiohttp_client(create_app(settings))
    found = await scrape(client)
    out = "memberbot_outbox_messages"
    assert found[(out, (("kind", "birthday"), ("status", "queued")))] == 1
    assert found[(out, (("kind", "holiday"), ("status", "queued")))] == 1
    assert found[(out, (("kind", "birthday"), ("status", "suppressed")))] == 2
    assert 590 < found[("memberbot_outbox_oldest_due_seconds", ())] < 900
    assert found[("memberbot_send_attempts", (("provider", "twilio"),))] == 8
    failed = (("error_code", "30003"), ("provider", "twilio"))
    assert found[("memberbot_send_failures", failed)] == 1
    assert found[("memberbot_plan_suppressed", (("reason", "weekly cap"),))] == 1
    assert found[("memberbot_plan_suppressed", (("reason", "stopped"),))] == 1
    assert found[("memberbot_plan_duration_seconds", ())] == 42
    assert found[("memberbot_plan_last_success_timestamp_seconds", ())] == start.timestamp() + 42
    assert found[("memberbot_plan_planned", ())] == 3
    assert found[("memberbot_inbox_conversations", (("status", "open"),))] == 1
    assert found[("memberbot_inbox_conversations", (("status", "answered"),))] == 0


async def test_token_guards_metrics_when_set(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings(metrics={"token": "s3cret-metrics"})))
    assert (await client.get("/metrics")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.get("/metrics", headers=wrong)).status == 401
    await scrape(client, {"Authorization": "Bearer s3cret-metrics"})


async def test_metrics_can_be_turned_off(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings(metrics={"enabled": False})))
    assert (await client.get("/metrics")).status == 404


async def test_request_id_is_returned_and_a_plain_given_one_kept(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    first = (await client.get("/healthz")).headers["X-Request-Id"]
    second = (await client.get("/healthz")).headers["X-Request-Id"]
    assert len(first) == 16 and first != second
    assert first.isalpha()  # no digit run that the log's phone masking would touch
    given = {"X-Request-Id": "lb-4f2a9c1e-13800138000"}
    answer = (await client.get("/healthz", headers=given)).headers["X-Request-Id"]
    assert answer == "lb-4f2a9c1e-13800138000"
    hostile = {"X-Request-Id": "x\u00e9<script>"}
    assert (await client.get("/healthz", headers=hostile)).headers["X-Request-Id"] != "x"
    assert (await client.get("/nowhere")).headers["X-Request-Id"]


@pytest.fixture
def log_to(request):
    """configure_logging(buffer, options) for one test; the root logger put back after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def install(**options) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(buffer, LoggingSettings(**options))
        return buffer

    yield install
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


@pytest.mark.parametrize("mode", ["all", "errors", "off"])
async def test_access_log_modes(aiohttp_client, make_settings, log_to, mode):
    buffer = log_to(access_log=mode)
    client = await aiohttp_client(create_app(make_settings(logging={"access_log": mode})))
    ok = (await client.get("/healthz")).headers["X-Request-Id"]
    missing = (await client.get("/api/members/+8613800138000?secret=1")).headers["X-Request-Id"]
    lines = [line for line in buffer.getvalue().splitlines() if "memberbot.access" in line]
    logged_ok = any(ok in line and "GET /healthz 200" in line for line in lines)
    assert logged_ok == (mode == "all"), lines
    refused = [line for line in lines if missing in line]
    assert len(refused) == (0 if mode == "off" else 1), (missing, lines)
    for line in refused:
        assert "401" in line and "secret" not in line and "13800138000" not in line


async def test_json_log_lines_carry_the_request_id(aiohttp_client, make_settings, log_to):
    buffer = log_to(format="json", access_log="all")
    client = await aiohttp_client(create_app(make_settings(logging={"access_log": "all"})))
    rid = (await client.get("/healthz")).headers["X-Request-Id"]
    entries = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    access = [e for e in entries if e["logger"] == "memberbot.access"]
    assert access and access[-1]["request_id"] == rid
    assert access[-1]["message"].startswith("GET /healthz 200 ")
    assert datetime.fromisoformat(access[-1]["time"]).utcoffset() is not None


@pytest.mark.parametrize("form", ["text", "json"])
async def test_log_keeps_the_request_id_and_masks_phones(
    aiohttp_client, make_settings, log_to, form
):
    buffer = log_to(format=form, access_log="all")
    client = await aiohttp_client(create_app(make_settings(logging={"access_log": "all"})))
    given = {"X-Request-Id": "lb-13800138000-7"}
    await client.get("/api/members/+8613800138000", headers=given)
    lines = [line for line in buffer.getvalue().splitlines() if "memberbot.access" in line]
    assert len(lines) == 1 and "lb-13800138000-7" in lines[0]
    assert "+8613800138000" not in lines[0] and "+861******8000" in lines[0]
