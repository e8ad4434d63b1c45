"""Settings: one typed, validated object built once from TOML + environment.

`load_settings()` is the only entry point. Nothing reads configuration at import
time; the composition root (`bot.cli`) builds the settings and passes them in.

Sources, later wins: built-in defaults (the embedded default of CONTRACT.md),
the TOML file, then `MEMBERBOT_<SECTION>_<KEY>` environment variables (nested
tables joined with `_`, lists and tables as JSON).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.kinds import SERVICE_KINDS
from models.occasions import OccasionSettings
from models.rules import LoyaltyRules, OwnershipRules, PointsRules, RewardRules, TierRules
from models.settings.lexicon import Lexicon

ENV_PREFIX = "MEMBERBOT_"
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ConfigError(Exception):
    """Bad configuration: the message names the key and fits on one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
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


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///memberbot.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _driver(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("expected sqlite+aiosqlite://… or postgresql+asyncpg://…")
        return v


class BrandSettings(_Section):
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


class WeChatSettings(_Section):
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


class TwilioSettings(_Section):
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    api_base_url: str = "https://api.twilio.com"


class SmsSettings(_Section):
    provider: Literal["twilio", "console"] = "console"
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)


class ApiSettings(_Section):
    keys: list[str] = Field(default_factory=list)
    """Bearer keys for the operator API; empty = the operator API refuses every call."""

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for k in v:
            if len(k) < 16:
                raise ValueError("every API key needs at least 16 characters")
        return v


class StaffSettings(_Section):
    """The staff console (`/staff/`, docs/staff-console.md)."""

    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    """A console session ends this long after sign-in (or at sign-out)."""
    sign_in_attempts: Annotated[int, Field(ge=1, le=1000)] = 20
    """Failed sign-ins allowed per client address within `sign_in_window` seconds."""
    sign_in_attempts_per_account: Annotated[int, Field(ge=1, le=1000)] = 10
    """Failed sign-ins allowed per assistant code (password sign-in) within the window."""
    sign_in_window: Annotated[float, Field(ge=1, le=86_400)] = 900


class SchedulerSettings(_Section):
    enabled: bool = True
    plan_at: str = "08:00"

    @field_validator("plan_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("expected HH:MM")
        return v


class OutboxSettings(_Section):
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 5
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    retry_backoff: Annotated[float, Field(gt=0, le=300)] = 1
    rate_sms: Annotated[float, Field(ge=0, le=10_000)] = 10
    """SMS sent per second at most, all senders together (0 = no limit); Twilio queues
    beyond a number's rate."""
    rate_wechat: Annotated[float, Field(ge=0, le=10_000)] = 20
    """WeChat API sends per second at most (0 = no limit)."""
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Messages one sender claims per channel per pass."""
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 16
    """Provider calls under way at once, per channel (a hanging provider holds up only
    its own channel)."""
    claim_timeout: Annotated[float, Field(ge=30, le=86_400)] = 300
    """Seconds after which a `sending` claim counts as dead (its process died mid-send) and
    another sender takes the message over (scheduler.outbox)."""


class CareDays(_Section):
    """``[messaging.care_days]``: day N after a sale (the sale's day is day 1) on which
    each purchase follow-up is due (DOMAIN.md §6 care calendar); 0 = not sent.
    ``care_d7`` goes to VIP tiers (above the entry tier), ``care_d10`` to the entry tier."""

    points_notice: Annotated[int, Field(ge=0, le=3660)] = 2
    care_d3: Annotated[int, Field(ge=0, le=3660)] = 3
    care_d7: Annotated[int, Field(ge=0, le=3660)] = 7
    care_d10: Annotated[int, Field(ge=0, le=3660)] = 10
    care_d30: Annotated[int, Field(ge=0, le=3660)] = 30
    care_d120: Annotated[int, Field(ge=0, le=3660)] = 120

    @field_validator("*")
    @classmethod
    def _not_sale_day(cls, v: int) -> int:
        if v == 1:
            raise ValueError("0 (not sent) or a day from 2 on (day 1 is the sale's own day)")
        return v


class MessagingSettings(_Section):
    send_window: str = "09:00-21:00"
    weekly_cap: Annotated[int, Field(ge=0, le=100)] = 2
    care_days: CareDays = Field(default_factory=CareDays)
    """The purchase follow-up calendar (scheduler.planner; DOMAIN.md §6)."""
    quarterly_after: Annotated[int, Field(ge=1, le=100)] = 3
    """Care follow-ups queued since the member's last purchase after which care falls
    back to one message per quarter (DOMAIN.md §6 frequency control)."""
    dormant_months: Annotated[int, Field(ge=2, le=120)] = 10
    """A member whose last purchase is more than this many calendar months old gets
    one `dormant` greeting (DOMAIN.md §6)."""
    points_expiry_notice_days: Annotated[int, Field(ge=0, le=365)] = 7
    """`points_expiry` goes this many days before the last day points can be spent."""
    lexicon: Lexicon = Field(default_factory=Lexicon)
    """Words the message rules reject (models.settings.lexicon; MESSAGING.md "Message classes")."""

    @field_validator("send_window")
    @classmethod
    def _window(cls, v: str) -> str:
        if not _WINDOW.match(v):
            raise ValueError("expected HH:MM-HH:MM (end may be 24:00)")
        return v


class GreetingSettings(_Section):
    """``[greetings]``: assistants' personal greetings (`scheduler.greetings`)."""

    per_assistant_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 30
    """New greetings one assistant may queue in any hour (counted from the outbox, so the
    limit holds across replicas); more are refused with 429."""
    occasion_window_days: Annotated[int, Field(ge=0, le=60)] = 3
    """A greeting for a date-tied occasion (birthday, anniversaries, festival, season start)
    is accepted only this many days before or after it (`scheduler.occasion_window`): a
    day or two late over a weekend still reads naturally, a week off does not."""


class KeywordSettings(_Section):
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


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    brand: BrandSettings = Field(default_factory=BrandSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    staff: StaffSettings = Field(default_factory=StaffSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    messaging: MessagingSettings = Field(default_factory=MessagingSettings)
    keywords: KeywordSettings = Field(default_factory=KeywordSettings)
    occasions: OccasionSettings = Field(default_factory=OccasionSettings)
    points: PointsRules = Field(default_factory=PointsRules)
    tiers: TierRules = Field(default_factory=TierRules)
    rewards: RewardRules = Field(default_factory=RewardRules)
    ownership: OwnershipRules = Field(default_factory=OwnershipRules)
    greetings: GreetingSettings = Field(default_factory=GreetingSettings)

    @property
    def loyalty(self) -> LoyaltyRules:
        return LoyaltyRules(
            points=self.points, tiers=self.tiers, rewards=self.rewards, ownership=self.ownership
        )


# --------------------------------------------------------------------------- loading


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class behind a field annotation, if the field is a sub-table."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_plain_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return all(a is str or a is type(None) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_plain_str(typing.get_args(annotation)[0])
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return False


def env_keys(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX, path: tuple = ()):
    """Yield (env var name, key path, annotation) for every leaf key of the settings."""
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        env = f"{prefix}{name.upper()}"
        if sub is not None:
            yield from env_keys(sub, env + "_", (*path, name))
        else:
            yield env, (*path, name), field.annotation


def _apply_env(data: dict, environ: Mapping[str, str]) -> dict[tuple, str]:
    sourced: dict[tuple, str] = {}
    for env, path, annotation in env_keys():
        if env not in environ:
            continue
        raw = environ[env]
        if _is_plain_str(annotation):
            value: Any = raw
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
        sourced[path] = env
    return sourced


def _one_line(exc: ValidationError, sourced: dict[tuple, str], origin: str) -> str:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "(root)"
    where = origin
    for path, env in sourced.items():
        if loc[: len(path)] == tuple(path):
            where = f"environment variable {env}"
    if err["type"] == "extra_forbidden":
        return f"config error: unknown key '{key}' in {where}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"config error: {key}: {msg} (in {where})"


def resolve_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else $MEMBERBOT_CONFIG, else ./config.toml if present, else None."""
    if explicit:
        return Path(explicit)
    if environ.get("MEMBERBOT_CONFIG"):
        return Path(environ["MEMBERBOT_CONFIG"])
    default = Path("config.toml")
    return default if default.is_file() else None


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict | None = None,
) -> Settings:
    """Build the settings. Raises ConfigError with a one-line message on any problem."""
    environ = os.environ if environ is None else environ
    data: dict = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config error: file not found: {p}") from None
        except OSError as exc:
            raise ConfigError(f"config error: cannot read {p}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config error: {p} is not valid TOML: {exc}") from None
    if overrides:
        _deep_merge(data, overrides)
    sourced = _apply_env(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, sourced, origin)) from None


def _deep_merge(into: dict, other: Mapping) -> None:
    for k, v in other.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v
