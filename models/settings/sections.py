"""The settings sections of the edges: server, database, brand, channels, API, staff, keywords.

Every section is a frozen pydantic model that refuses unknown keys (`Section`); the
sections the scheduler plans and sends by are in `models.settings.messaging`, the root
`Settings` in `models.settings`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.kinds import SERVICE_KINDS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    public_url: str = "http://127.0.0.1:8080"
    """The URL the platforms call (Twilio signs it): scheme://host[:port], no trailing slash."""
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    idle_timeout: Annotated[float, Field(gt=0, le=3600)] = 15.0
    """Seconds a connection may wait for its (next) request's headers: an idle keep-alive
    connection, or a client sending its headers slowly, is closed after this."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or networks (CIDR) of the load balancers in front: only when the direct
    peer is one of them is the client address taken from X-Forwarded-For (its rightmost
    address that is not a trusted proxy; `bot.proxy`). Empty: the peer is the client."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return out

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", v):
            raise ValueError("expected an http(s) URL")
        return v.rstrip("/")


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///memberbot.db"
    echo: bool = False
    pgbouncer: bool = False
    """PostgreSQL through PgBouncer in transaction pooling (`models.db.make_engine`): no
    prepared-statement caches and no startup parameters, which a transaction pooler
    cannot keep (docs/postgresql.md "PgBouncer")."""

    @field_validator("url")
    @classmethod
    def _driver(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("expected sqlite+aiosqlite://… or postgresql+asyncpg://…")
        return v

    @model_validator(mode="after")
    def _pooler(self) -> DatabaseSettings:
        if self.pgbouncer and not self.url.startswith("postgresql"):
            raise ValueError("pgbouncer = true needs a postgresql+asyncpg:// url")
        return self


class BrandSettings(Section):
    name: str = "memberbot"
    timezone: str = "Asia/Shanghai"
    locale: Literal["zh_CN", "en"] = "zh_CN"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class WeChatSettings(Section):
    enabled: bool = False
    app_id: str = ""
    app_secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    """Set: safe mode is the only mode (a request without `encrypt_type=aes` → 403)."""
    max_timestamp_age: Annotated[int, Field(ge=10, le=86_400)] = 300
    """Seconds a signed request's `timestamp` may be from our clock (either way) → else 403;
    also how long a signed URL is remembered with its body (`bot.channels.wechat_replay`)."""
    api_base_url: str = "https://api.weixin.qq.com"
    templates: dict[str, str] = Field(default_factory=dict)
    """WeChat template-message ids by service-notice kind (``points_notice = "tmpl-id"``).
    A service notice goes as a template message only when its kind has an id here
    (scheduler.policy.choose_channel; MESSAGING.md "Channels")."""

    @field_validator("templates")
    @classmethod
    def _template_kinds(cls, v: dict[str, str]) -> dict[str, str]:
        wrong = sorted(k for k in v if k not in SERVICE_KINDS)
        if wrong:
            raise ValueError(
                f"template messages are for service notices only, not {wrong} "
                f"(expected some of {sorted(SERVICE_KINDS)})"
            )
        return v

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes(cls, v: str) -> str:
        if v and len(v) != 43:
            raise ValueError("must be 43 characters (or empty for plain mode)")
        return v


class TwilioSettings(Section):
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    api_base_url: str = "https://api.twilio.com"


class AliyunSmsSettings(Section):
    """Aliyun SMS (dysmsapi), the domestic provider of mainland stores (docs/aliyun-sms.md).

    Secrets come from the environment like every secret: `MEMBERBOT_SMS_ALIYUN_ACCESS_KEY_ID`,
    `MEMBERBOT_SMS_ALIYUN_ACCESS_KEY_SECRET`, `MEMBERBOT_SMS_ALIYUN_PUSH_TOKEN`."""

    access_key_id: str = ""
    access_key_secret: str = ""
    sign_name: str = ""
    """The approved signature (签名); Aliyun puts it in 【】 before every text."""
    endpoint: str = "https://dysmsapi.aliyuncs.com"
    """A URL (scheme http or https, host, optional port); a fake on loopback in tests."""
    push_token: str = ""
    """The secret in the up-message and report URLs (`?token=`); empty → both refuse (403)."""
    variable_max_length: Annotated[int, Field(ge=1, le=500)] = 35
    """Longest value of one template variable (Aliyun: 35 characters unless the limit was
    lifted for the account); a longer value is not sent."""
    templates: dict[str, str] = Field(default_factory=dict)
    """Approved template codes by message kind (``points_notice = "SMS_1"``) or reply
    (``reply_points = "SMS_2"``, the reply's template name after ``reply_``);
    ``"<key>.en"`` for the English wording. No code → that text is not sent by SMS."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?/?", v):
            raise ValueError("must be http(s)://host[:port]")
        return v.rstrip("/")

    @field_validator("templates")
    @classmethod
    def _codes(cls, v: dict[str, str]) -> dict[str, str]:
        wrong = sorted(
            k
            for k, code in v.items()
            if not re.fullmatch(r"[a-z0-9_]+(\.en)?", k)
            or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", code)
        )
        if wrong:
            raise ValueError(f"keys are kinds or reply_<name>, codes like SMS_123: {wrong}")
        return v


class SmsSettings(Section):
    provider: Literal["twilio", "aliyun", "console"] = "console"
    """Which provider sends every SMS (one at a time: docs/aliyun-sms.md "Routing")."""
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    aliyun: AliyunSmsSettings = Field(default_factory=AliyunSmsSettings)


class LoggingSettings(Section):
    """What `memberbot serve` writes to stderr (docs/operations.md "Logs")."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    access_log: Literal["all", "errors", "off"] = "errors"
    """One line per HTTP request: for every request, only for 4xx/5xx and slow ones,
    or none (the metrics count every request either way)."""
    slow_request: Annotated[float, Field(gt=0, le=3600)] = 1.0
    """Seconds after which a request counts as slow (logged under access_log = "errors")."""


class MetricsSettings(Section):
    """`GET /metrics` in Prometheus's text format (docs/operations.md "Metrics")."""

    enabled: bool = True
    token: str = ""
    """When set, /metrics needs `Authorization: Bearer <token>`."""


class ApiSettings(Section):
    keys: list[str] = Field(default_factory=list)
    """Bearer keys for the operator API; empty = the operator API refuses every call."""

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for k in v:
            if len(k) < 16:
                raise ValueError("every API key needs at least 16 characters")
        return v


class StaffSettings(Section):
    """The staff console (`/staff/`, docs/staff-console.md)."""

    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    """A console session ends this long after sign-in (or at sign-out)."""
    sign_in_attempts: Annotated[int, Field(ge=1, le=1000)] = 20
    """Failed sign-ins allowed per client address within `sign_in_window` seconds."""
    sign_in_attempts_per_account: Annotated[int, Field(ge=1, le=1000)] = 10
    """Failed sign-ins allowed per assistant code (password sign-in) within the window."""
    sign_in_window: Annotated[float, Field(ge=1, le=86_400)] = 900


_HOURS = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")


def _check_hours(value: str) -> str:
    if not _HOURS.match(value.strip()):
        raise ValueError(f"store hours {value!r}: expected HH:MM-HH:MM")
    return value.strip()


class StoreSettings(Section):
    """When the stores' people answer: told to a member whose question is handed to a
    person (the inbox, docs/staff-console.md "Inbox")."""

    hours: str = "10:00-22:00"
    """Opening hours, HH:MM-HH:MM brand time (end may be 24:00; start > end wraps)."""
    hours_by_store: dict[str, str] = Field(default_factory=dict)
    """A store's own hours by store code; the others keep `hours`."""

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        return _check_hours(v)

    @field_validator("hours_by_store")
    @classmethod
    def _by_store(cls, v: dict[str, str]) -> dict[str, str]:
        return {code: _check_hours(hours) for code, hours in v.items()}

    def hours_of(self, store_code: str | None) -> str:
        return self.hours_by_store.get(store_code or "", self.hours)


class KeywordSettings(Section):
    """A store's own member keywords per intent, added to CONTRACT.md's words.

    Words are only added, never replaced: the contract's words (the stop words above
    all) keep working whatever is configured here.
    """

    points: list[str] = Field(default_factory=list)
    redeem: list[str] = Field(default_factory=list)
    confirm: list[str] = Field(default_factory=list)
    vouchers: list[str] = Field(default_factory=list)
    pickup: list[str] = Field(default_factory=list)
    mail: list[str] = Field(default_factory=list)
    stop: list[str] = Field(default_factory=list)
    resume: list[str] = Field(default_factory=list)
    help: list[str] = Field(default_factory=list)
    bind: list[str] = Field(default_factory=list)
    handoff: list[str] = Field(default_factory=list)
    """Words that hand the message to a person (the inbox), besides 人工 / 转人工 / AGENT."""
