"""The settings sections of the edges: server, database, brand, channels, API, staff, keywords.

Every section is a frozen pydantic model that refuses unknown keys (`Section`); the
sections the scheduler plans and sends by are in `models.settings.messaging`, the root
`Settings` in `models.settings`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", v):
            raise ValueError("expected an http(s) URL")
        return v.rstrip("/")


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///memberbot.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _driver(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("expected sqlite+aiosqlite://… or postgresql+asyncpg://…")
        return v


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


class SmsSettings(Section):
    provider: Literal["twilio", "console"] = "console"
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)


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
