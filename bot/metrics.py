"""`GET /metrics` in Prometheus's text format (`[metrics]`, docs/operations.md "Metrics").

Two kinds of numbers:

- This process's, kept in the app's own `CollectorRegistry` (`HttpMetrics`; a registry
  per app, so several apps in one process never mix): HTTP requests by endpoint group
  and status with a latency histogram (`bot.access`), late answers (the WeChat
  customer-service fallback, the SMS sent after the TwiML), the database pools in use,
  and the outbox sender's circuit breaker.
- The database's, read at each scrape (`models.health`): outbox messages by status and
  kind, the age of the oldest due message, send attempts and failures by provider and
  error code, the daily planning run (last success, duration, planned, suppressed by
  reason), the hand-off conversations open or answered. Every replica reports the
  same values for these, so alert on `max()` of them, not `sum()`.

With `metrics.token` set, the endpoint needs `Authorization: Bearer <token>` (401
otherwise); with `metrics.enabled = false` it is not routed (404).
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.appkeys import ENGINE, SENDER, SESSIONS, SETTINGS
from bot.errors import Unauthorized
from models import health
from models.db import transaction
from models.types import utcnow

_GROUPS = (
    ("/wechat", "wechat"),
    ("/sms/twilio/status", "twilio_status"),
    ("/sms/twilio", "twilio"),
    ("/sms/aliyun/report", "aliyun_report"),
    ("/sms/aliyun/up", "aliyun_up"),
    ("/api/", "api"),
    ("/staff", "staff"),
    ("/metrics", "metrics"),
    ("/healthz", "healthz"),
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 10.0)
"""Seconds; 4 s is WeChat's passive-reply deadline."""


def endpoint_group(path: str) -> str:
    """A small fixed label set: the webhook, API or console a path belongs to."""
    for prefix, group in _GROUPS:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return group
    return "other"


class HttpMetrics:
    """This process's counters and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "memberbot_http_requests", "HTTP requests by endpoint group and status",
            ["endpoint", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "memberbot_http_request_seconds", "HTTP request duration by endpoint group",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.late = Counter(
            "memberbot_late_answers", "Answers sent after the webhook replied (not ready in time)",
            ["channel"], registry=self.registry,
        )  # fmt: skip

    def observe(self, path: str, status: int, seconds: float) -> None:
        group = endpoint_group(path)
        self.requests.labels(group, str(status)).inc()
        self.latency.labels(group).observe(seconds)

    def late_answer(self, channel: str) -> None:
        self.late.labels(channel).inc()


HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)


class _Snapshot:
    """A one-shot collector over families computed before the scrape is written."""

    def __init__(self, families: list[GaugeMetricFamily]):
        self._families = families

    def collect(self):
        return iter(self._families)


def _gauge(name: str, doc: str, labels: list[str], rows) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for *values, number in rows:
        family.add_metric([str(v) for v in values], float(number))
    return family


async def _database_families(app: web.Application) -> list[GaugeMetricFamily]:
    now = utcnow()
    async with transaction(app[SESSIONS]) as session:
        counts = await health.outbox_counts(session)
        oldest = await health.oldest_due(session, now)
        attempts = await health.send_totals(session)
        failures = await health.send_failures(session)
        newest, done = await health.last_runs(session)
        suppressed = await health.suppressed_on(session, newest.day) if newest else {}
        inbox = await health.conversations(session)
    families = [
        _gauge("memberbot_outbox_messages", "Outbox messages by status and kind",
               ["status", "kind"], counts),
        _gauge("memberbot_outbox_oldest_due_seconds",
               "Age of the oldest queued message that is due (0: none waits)", [],
               [((now - oldest).total_seconds() if oldest else 0.0,)]),
        _gauge("memberbot_send_attempts", "Send attempts by provider", ["provider"], attempts),
        _gauge("memberbot_send_failures",
               "Messages given up or undeliverable, by provider and error code",
               ["provider", "error_code"], failures),
        _gauge("memberbot_plan_suppressed", "Messages suppressed by the newest daily run",
               ["reason"], sorted(suppressed.items())),
        _gauge("memberbot_inbox_conversations",
               "Hand-off conversations not closed: open (waiting for an answer) or answered",
               ["status"], inbox),
    ]  # fmt: skip
    if newest is not None:
        families.append(_gauge("memberbot_plan_planned", "Messages planned by the newest daily run",
                               [], [(newest.planned,)]))  # fmt: skip
    if done is not None and done.finished_at is not None:
        families += [
            _gauge("memberbot_plan_last_success_timestamp_seconds",
                   "Unix time the newest finished daily run ended", [],
                   [(done.finished_at.timestamp(),)]),
            _gauge("memberbot_plan_duration_seconds", "Duration of the newest finished daily run",
                   [], [((done.finished_at - done.started_at).total_seconds(),)]),
        ]  # fmt: skip
    return families


def _process_families(app: web.Application) -> list[GaugeMetricFamily]:
    pool = app[ENGINE].pool
    families = [
        _gauge("memberbot_db_pool_in_use", "Database connections checked out of the pool",
               ["pool"], [("sessions", pool.checkedout())]),
    ]  # fmt: skip
    sender = app.get(SENDER)
    if sender is not None:
        families.append(
            _gauge("memberbot_breaker_open", "1 while the channel's circuit breaker is open",
                   ["channel"], [(ch, int(down)) for ch, down in sender.breaker_states()])
        )  # fmt: skip
    return families


async def metrics_endpoint(request: web.Request) -> web.Response:
    app = request.app
    token = app[SETTINGS].metrics.token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("metrics need the bearer token (metrics.token)")
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Snapshot(await _database_families(app) + _process_families(app)))
    body = generate_latest(app[HTTP_METRICS].registry) + generate_latest(scrape)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """The process's metrics (always kept: `bot.access` counts into them) and, when
    `metrics.enabled`, the `/metrics` route."""
    app[HTTP_METRICS] = HttpMetrics()
    if app[SETTINGS].metrics.enabled:
        app.router.add_get("/metrics", metrics_endpoint)
